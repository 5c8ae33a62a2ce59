"""Retention as configured: storage modes at intake, the prune command, config checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import pytest_twisted
from sqlalchemy import select

from engine.components import load_config
from engine.config import ConfigError
from engine.mllp.client import BlockingMLLPClient
from engine.store.schema import deliveries, messages

from .engine_harness import in_thread, start_engine, write_config


def adt(n: int) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|R{n}|P|2.5\rPID|1\r".encode()


@pytest_twisted.inlineCallbacks
def test_metadata_only_keeps_no_raw_for_a_message_with_nothing_to_deliver(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text("name: adt\nstorage: metadata_only\n")
    sb = start_engine(tmp_path, """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
routes:
  - {match: {type: ADT}, to: [adt]}
""", channels=())  # fmt: skip
    try:
        port = sb.port_of("in")

        def send():
            with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
                return c.send(adt(1))

        ack = yield in_thread(send)
        assert b"MSA|AA|R1" in ack
        with sb.store.engine.connect() as conn:
            row = conn.execute(select(messages.c.raw, messages.c.ack, messages.c.size)).one()
        assert row.raw == b"" and row.ack and row.size == len(adt(1))
    finally:
        yield sb.stopService()


def test_prune_command(tmp_path):
    cfg = write_config(tmp_path, "listeners:\n  - {name: in, mllp: 'tcp:0:interface=127.0.0.1'}\n")
    config = load_config(cfg)
    from engine.store import migrations
    from engine.store.db import create_store_engine

    engine = create_store_engine(config.store)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        for i, (age, status) in enumerate([(10, "routed"), (10, "rejected"), (0.1, "routed")], 1):
            conn.execute(messages.insert().values(id=i, received_at=1_000_000_000 if age == 10
                                                  else 4_000_000_000, listener="in",
                                                  status=status, size=1, raw=b"x"))  # fmt: skip
        conn.execute(deliveries.insert().values(id=1, message_id=1, channel="c", destination="d",
                                                status="pending", content_type="t", payload=b"x",
                                                created_at=1.0))  # fmt: skip
    engine.dispose()
    out = subprocess.run([sys.executable, "-m", "engine", "prune", "-c", str(cfg), "--max-age",
                          "30d", "--json"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["messages"] == 1  # message 1 still has a delivery to make
    engine = create_store_engine(config.store)
    with engine.connect() as conn:
        assert sorted(conn.execute(select(messages.c.id)).scalars()) == [1, 3]
    engine.dispose()


def test_retention_shorter_than_the_duplicate_window_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, """
store_options: {retention: {max_age: 1h}}
listeners:
  - {name: in, mllp: 'tcp:0:interface=127.0.0.1', duplicate_window: 1d}
""")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    assert caught.value.format().splitlines()[0] == (
        "routes.yaml:3:38: retention max_age 3600 s is not longer than listener 'in' "
        "duplicate_window 86400 s: resends could no longer be recognised"
    )
