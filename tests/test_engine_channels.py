"""Channels on a running engine: outcomes stored with the message, ACKs per mode."""

from __future__ import annotations

import pytest
import pytest_twisted
from sqlalchemy import select

from engine.mllp.client import BlockingMLLPClient
from engine.store.schema import channel_runs, deliveries, messages

from .engine_harness import in_thread, start_engine

CONFIG = """
listeners:
  - {name: fast, mllp: "tcp:0:interface=127.0.0.1"}
  - {name: strict, mllp: "tcp:0:interface=127.0.0.1", ack: after_routing}
routes:
  - {match: {type: ORU}, to: [lab, audit]}
"""
LAB = """name: lab
steps:
  - filter: {field: MSH-4, in: [QUEST, LABCORP]}
  - map: {field: PV1-2, values: {I: IP}, on_missing: error}
  - set: {MSH-5: EPIC}
destinations:
  - {name: epic, mllp: "tcp:127.0.0.1:6661"}
  - {name: archive, file: out}
"""
AUDIT = "name: audit\ndestinations:\n  - {name: log, file: audit}\n"


def oru(n: int, facility: str = "QUEST", pv1: str = "I") -> bytes:
    return (f"MSH|^~\\&|LAB|{facility}|X|HOSP|2024||ORU^R01|R{n}|P|2.5\r"
            f"PID|1||123^^^H^MR\rPV1|1|{pv1}\rOBX|1|NM|GLU||182\r").encode()  # fmt: skip


@pytest.fixture
def engine(tmp_path, store_url):
    ch = tmp_path / "channels"
    ch.mkdir()
    (ch / "lab.yaml").write_text(LAB)
    (ch / "audit.yaml").write_text(AUDIT)
    sb = start_engine(tmp_path, CONFIG, channels=(), store=store_url)
    yield sb
    pytest_twisted.blockon(sb.stopService())


def send(port, *payloads):
    with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
        return [c.send(p) for p in payloads]


def table(sb, t):
    with sb.store.engine.connect() as conn:
        return conn.execute(select(t).order_by(t.c.id)).mappings().all()


@pytest_twisted.inlineCallbacks
def test_outcomes_stored_and_acks_per_mode(engine):
    fast, strict = engine.port_of("fast"), engine.port_of("strict")
    replies = yield in_thread(send, fast, oru(1), oru(2, facility="OTHER"), oru(3, pv1="X"))
    assert [r.split(b"\r")[1] for r in replies] == [b"MSA|AA|R1", b"MSA|AA|R2", b"MSA|AA|R3"]
    (strict_reply,) = yield in_thread(send, strict, oru(4, pv1="X"))
    lines = strict_reply.decode().split("\r")
    assert lines[1] == "MSA|AE|R4"
    assert lines[2] == (
        "ERR|||207^Application internal error^HL70357^^^^^^channel lab step 2 (map): "
        "PV1-2: value 'X' is not in the map|E"
    )
    msgs = {m["control_id"]: m for m in table(engine, messages)}
    assert {k: v["status"] for k, v in msgs.items()} == {
        "R1": "routed", "R2": "routed", "R3": "errored", "R4": "errored"}  # fmt: skip
    runs = [(r["message_id"], r["channel"], r["status"], r["step"], r["step_kind"])
            for r in table(engine, channel_runs)]  # fmt: skip
    r1, r2, r3 = msgs["R1"]["id"], msgs["R2"]["id"], msgs["R3"]["id"]
    # plain passes are implied by the message's routes; only what went otherwise is a row
    assert runs[:2] == [(r2, "lab", "filtered", 1, "filter"), (r3, "lab", "errored", 2, "map")]
    assert msgs["R1"]["routes"] == "lab,audit"
    outs = [(d["message_id"], d["channel"], d["destination"]) for d in table(engine, deliveries)]
    assert outs[:4] == [
        (r1, "lab", "epic"), (r1, "lab", "archive"), (r1, "audit", "log"), (r2, "audit", "log"),
    ]  # fmt: skip
    epic = table(engine, deliveries)[0]["payload"]
    assert epic.split(b"|")[4] == b"EPIC" and epic.endswith(b"OBX|1|NM|GLU||182\r")
    get = engine.metrics.registry.get_sample_value
    assert get("switchboard_channel_messages_total", {"channel": "lab", "outcome": "errored"}) == 2
    assert get("switchboard_step_errors_total", {"channel": "lab", "step": "2 map"}) == 2


@pytest_twisted.inlineCallbacks
def test_duplicate_does_not_run_channels_twice(engine):
    port = engine.port_of("fast")
    first, again = yield in_thread(send, port, oru(9), oru(9))
    assert first == again
    assert len(table(engine, channel_runs)) == 0 and len(table(engine, deliveries)) == 3


def test_children_rows_record_what_the_message_row_does_not():
    from engine.channel import ChannelResult, Output
    from engine.message_row import _children

    results = [
        ChannelResult("a", "passed", outputs=[Output("d", "mllp", b"x", "t")]),
        ChannelResult("b", "passed", flags=["critical"]),
        ChannelResult("c", "filtered", step=1, step_kind="filter"),
    ]
    runs, outs = _children(results, 5.0)
    assert [(r["channel"], r["status"], r["flags"]) for r in runs] == [
        ("b", "passed", "critical"), ("c", "filtered", None)]  # fmt: skip
    assert [(o["channel"], o["destination"], o["payload"]) for o in outs] == [("a", "d", b"x")]
