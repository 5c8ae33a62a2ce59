"""WAL checkpoints on their own thread (engine/store/checkpoint.py), SQLite only."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import reactor
from twisted.internet.task import deferLater

from engine.app import StoreService
from engine.metrics import Metrics
from engine.store import migrations
from engine.store.checkpoint import WAL_LIMIT_PAGES, WalCheckpointer
from engine.store.db import create_store_engine
from engine.store.schema import messages
from engine.store.writer import StoreWriter
from tests.test_store import DAY, row

from .settings import store_options


@pytest_twisted.inlineCallbacks
def wait_for(predicate, timeout: float = 10.0):
    """Poll (bounded) until predicate() holds: the checkpointer works on its own thread."""
    waited = 0.0
    while not predicate() and waited < timeout:
        yield deferLater(reactor, 0.01, lambda: None)
        waited += 0.01
    assert predicate()


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = create_store_engine(
        f"sqlite:///{tmp_path / 'store.db'}", wal_autocheckpoint=WAL_LIMIT_PAGES
    )
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest_twisted.inlineCallbacks
def test_writer_commits_trigger_background_checkpoints(sqlite_engine):
    ckpt = WalCheckpointer(sqlite_engine, every_rows=5)
    writer = StoreWriter(sqlite_engine, reactor, checkpointer=ckpt)
    writer.start()
    try:
        for i in range(4):  # 4 rows: not yet
            yield writer.submit([row(f"W{i}")], [DAY])
        assert ckpt.passes == 0
        yield writer.submit([row("W4"), row("W5")], [DAY, DAY])  # 6 rows
        yield wait_for(lambda: ckpt.passes == 1)
        busy, log_frames, copied = ckpt.last
        assert busy == 0 and log_frames > 0 and copied == log_frames  # caught up with the log
    finally:
        yield writer.stop()
    assert not ckpt._thread.is_alive()  # stopped with the writer
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 6
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_LIMIT_PAGES


class _FailingEngine:
    """raw_connection() whose checkpoint raises, counting the attempts."""

    def __init__(self):
        self.attempts = 0
        self.closed = threading.Event()

    def raw_connection(self):
        engine = self

        class Cursor:
            def execute(self, sql):
                engine.attempts += 1
                raise sqlite3.OperationalError("disk I/O error")

            def close(self):
                pass

        class Conn:
            def cursor(self):
                return Cursor()

            def close(self):
                engine.closed.set()

        return Conn()


@pytest_twisted.inlineCallbacks
def test_a_failed_checkpoint_is_logged_and_the_next_one_still_runs():
    engine = _FailingEngine()
    ckpt = WalCheckpointer(engine, every_rows=1)
    ckpt.start()
    try:
        ckpt.written(1)
        yield wait_for(lambda: engine.attempts == 1)
        ckpt.written(3)
        yield wait_for(lambda: engine.attempts == 2)
        assert ckpt.passes == 0
    finally:
        ckpt.stop()
    assert engine.closed.is_set()


@pytest.mark.parametrize(
    ("url", "options", "every"),
    [
        ("sqlite:///{tmp}/s.db", {"checkpoint_rows": 300}, 300),  # the config's default
        ("sqlite:///{tmp}/s.db", {"checkpoint_rows": 0}, None),  # SQLite's own checkpoints
        ("sqlite://", {"checkpoint_rows": 300}, None),  # in memory: no log to checkpoint
    ],
)
def test_store_service_uses_a_checkpointer_for_sqlite_files_only(tmp_path, url, options, every):
    svc = StoreService(url.format(tmp=tmp_path), store_options(**options), reactor, Metrics())
    try:
        ckpt = svc.writer.checkpointer
        assert (ckpt.every_rows if ckpt else None) == every
        with svc.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == (WAL_LIMIT_PAGES if every else 1000)
    finally:
        svc.engine.dispose()
