"""Delivery on a running engine: file destination end to end, the queue CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor
from twisted.internet.task import deferLater

from engine.mllp.client import BlockingMLLPClient
from engine.store.schema import deliveries

from .engine_harness import in_thread, start_engine

CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
routes:
  - {match: {type: ADT}, to: [adt]}
"""


def adt(n: int) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|F{n}|P|2.5\rPID|1||{n}^^^H^MR\r".encode()


def statuses(sb) -> list[str]:
    with sb.store.engine.connect() as conn:
        return list(conn.execute(select(deliveries.c.status).order_by(deliveries.c.id)).scalars())


@pytest_twisted.inlineCallbacks
def test_file_destination_end_to_end(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        f"name: adt\ndestinations:\n  - {{name: files, file: {out}, "
        "filename: '{type}_{control_id}.hl7'}\n"
    )
    sb = start_engine(tmp_path, CONFIG, channels=())
    try:
        port = sb.port_of("in")

        def send():
            with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
                return [c.send(adt(i)) for i in range(1, 4)]

        yield in_thread(send)
        for _ in range(500):  # bounded: 5 s
            if statuses(sb) == ["delivered"] * 3:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        assert statuses(sb) == ["delivered"] * 3
        assert sorted(p.name for p in out.iterdir()) == ["ADT_F1.hl7", "ADT_F2.hl7", "ADT_F3.hl7"]
        assert (out / "ADT_F2.hl7").read_bytes() == adt(2)
        get = sb.metrics.registry.get_sample_value
        assert get("switchboard_delivered_total", {"channel": "adt", "destination": "files"}) == 3
    finally:
        yield sb.stopService()


def test_queue_cli(tmp_path):
    """Operators act on queues with the engine stopped or running (here: stopped)."""
    from engine.components import load_config
    from engine.store import migrations
    from engine.store.db import create_store_engine
    from engine.store.schema import messages

    from .engine_harness import write_config

    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n  - {name: epic, mllp: 'tcp:127.0.0.1:9'}\n"
    )
    cfg = write_config(tmp_path, CONFIG, channels=())
    engine = create_store_engine(load_config(cfg).store)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        for i, status in enumerate(["dead", "pending", "dead"], 1):
            conn.execute(messages.insert().values(id=i, received_at=1.0, listener="in",
                                                  status="routed", size=1, raw=b"x"))  # fmt: skip
            conn.execute(deliveries.insert().values(
                id=i, message_id=i, channel="adt", destination="epic", status=status,
                content_type="t", payload=b"x", created_at=1.0, last_error="AR"))  # fmt: skip
    engine.dispose()

    def sb(*args):
        return subprocess.run([sys.executable, "-m", "engine", *args, "-c", str(cfg)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    listed = sb("queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(x) for x in listed.stdout.splitlines()]
    assert (row["destination"], row["dead"], row["pending"]) == ("epic", 2, 1)
    assert sb("queue", "pause", "adt/epic").stdout.strip() == "paused adt/epic"
    assert json.loads(sb("queue", "list", "--json").stdout)["paused"] is True
    assert sb("queue", "replay", "adt/epic").stdout.strip() == "replayed 2 deliveries"
    assert sb("queue", "skip", "adt/epic").stdout.strip() == "skipped delivery 1"
    shown = sb("queue", "show", "adt/epic").stdout.splitlines()
    assert [line.split()[0] for line in shown] == ["2", "3"]
    assert sb("queue", "resume", "adt/epic").returncode == 0
    from engine.admin.audit import recent

    engine = create_store_engine(load_config(cfg).store)
    actions = [(e["action"], e["target"]) for e in reversed(recent(engine))]
    engine.dispose()
    assert actions == [("pause", "adt/epic"), ("replay", "adt/epic"), ("skip", "adt/epic"),
                       ("resume", "adt/epic")]  # fmt: skip
    assert all(e["actor"].startswith("cli:") for e in recent(create_store_engine(
        load_config(cfg).store)))  # fmt: skip
    bad = sb("queue", "skip", "epic")
    assert bad.returncode == 2 and "CHANNEL/DESTINATION" in bad.stderr
