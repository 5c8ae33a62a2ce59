"""Engines for the store: SQLite (WAL, synchronous=FULL by default) or PostgreSQL (psycopg)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

BUSY_TIMEOUT_MS = 30_000  # how long a SQLite write waits for another connection's lock


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_sqlite_file(url: str) -> bool:
    """A SQLite store in a file: the only kind with a write-ahead log to checkpoint."""
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:")


def _identity_adapters() -> None:
    """Bind bytes and None without the sqlite3 module's adaptation lookup: for any type but
    int, float and str it asks the protocol type for ``__adapt__``, which formats and clears
    an AttributeError per parameter (about 1.5 µs per message row; gdb on the benchmark).
    An adapter in the registry answers first; these return the value unchanged."""
    sqlite3.register_adapter(bytes, bytes)
    sqlite3.register_adapter(type(None), _same)


def _same(value):
    return value


def create_store_engine(
    url: str, *, synchronous: str = "full", pool_size: int = 5, wal_autocheckpoint: int = 0
) -> Engine:
    """Create an engine; SQLite gets WAL, the given ``synchronous`` level and a busy timeout,
    and with ``wal_autocheckpoint`` that checkpoint threshold in pages (0: SQLite's 1,000)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        _identity_adapters()
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        level = synchronous.upper()

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={level}")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if wal_autocheckpoint:
                cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            cur.close()

        return engine
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return create_engine(u, pool_size=pool_size, pool_pre_ping=True)
