"""Shared fixtures: stores on SQLite (always) and PostgreSQL (when SWITCHBOARD_TEST_PG_URL set)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import create_engine, text

from engine.metrics import Metrics
from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.writer import StoreWriter

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples" / "hl7"
PG_URL = os.environ.get("SWITCHBOARD_TEST_PG_URL")

STORE_KINDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not PG_URL, reason="SWITCHBOARD_TEST_PG_URL is not set (no PostgreSQL server)"
            ),
        ],
    ),
]


def samples_or_skip() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"shared samples not found at {SAMPLES}")
    return SAMPLES


@pytest.fixture(params=STORE_KINDS)
def store_url(request, tmp_path):
    """A fresh, empty store URL: a SQLite file, or a throw-away schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def store_engine(store_url):
    engine = create_store_engine(store_url)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def writer(store_engine, metrics):
    from twisted.internet import reactor

    w = StoreWriter(store_engine, reactor, max_batch=500, observer=metrics.observe_commit)
    w.start()
    yield w
    pytest_twisted.blockon(w.stop())
