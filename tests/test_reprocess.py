"""A message a channel step failed is processed again: the sender's retry after the channel is
fixed and reloaded, stored as a new message linked to the one that failed."""

from __future__ import annotations

import pytest
import pytest_twisted
from sqlalchemy import select

from engine.store.schema import deliveries, messages

from .engine_harness import in_thread, send_all, start_engine

CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1", ack: after_routing}
routes:
  - {match: {type: ORU}, to: [lab]}
admin: {listen: "tcp:0:interface=127.0.0.1", token: secret}
"""
BROKEN = """name: lab
steps:
  - map: {field: PV1-2, values: {I: IP}, on_missing: error}
destinations:
  - {name: archive, file: out}
"""
FIXED = BROKEN.replace("{I: IP}", "{I: IP, X: XP}")


def oru(control_id: str, pv1: str = "X", patient: str = "P100") -> bytes:
    return (f"MSH|^~\\&|LAB|QUEST|X|HOSP|2024||ORU^R01|{control_id}|P|2.5\r"
            f"PID|1||{patient}^^^H^MR\rPV1|1|{pv1}\rOBX|1|NM|GLU||182\r").encode()  # fmt: skip


@pytest.fixture
def sb(tmp_path, store_url):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "lab.yaml").write_text(BROKEN)
    engine = start_engine(tmp_path, CONFIG, channels=(), store=store_url)
    yield engine
    pytest_twisted.blockon(engine.stopService())


def rows(sb) -> list:
    m = messages.c
    with sb.store.engine.connect() as conn:
        return conn.execute(
            select(m.id, m.control_id, m.status, m.ack_code, m.reprocess_of, m.duplicates)
            .order_by(m.id)
        ).all()  # fmt: skip


def outputs(sb) -> list[int]:
    with sb.store.engine.connect() as conn:
        return list(conn.execute(select(deliveries.c.message_id)).scalars())


@pytest_twisted.inlineCallbacks
def test_sender_retry_after_the_channel_is_fixed_gets_aa_and_is_routed(sb, tmp_path):
    port = sb.port_of("in")
    (first,) = yield in_thread(send_all, port, [oru("R1")])
    assert first.split(b"\r")[1] == b"MSA|AE|R1"
    # still broken: the retry runs the channel again, fails again, and says so (no stale AE)
    (second,) = yield in_thread(send_all, port, [oru("R1")])
    assert second.split(b"\r")[1] == b"MSA|AE|R1" and second != first
    (tmp_path / "channels" / "lab.yaml").write_text(FIXED)
    ok, lines = yield sb.reload()
    assert ok, lines
    (third,) = yield in_thread(send_all, port, [oru("R1")])
    assert third.split(b"\r")[1] == b"MSA|AA|R1"
    r1, r2, r3 = rows(sb)
    assert (r1.status, r1.ack_code, r1.reprocess_of) == ("errored", "AE", None)
    assert (r2.status, r2.ack_code, r2.reprocess_of) == ("errored", "AE", r1.id)
    assert (r3.status, r3.ack_code, r3.reprocess_of) == ("routed", "AA", r2.id)
    assert outputs(sb) == [r3.id]  # routed: its output is queued for the archive
    # the message is in now: the next resend is a duplicate, answered with that AA
    (fourth,) = yield in_thread(send_all, port, [oru("R1")])
    assert fourth == third
    assert [r.duplicates for r in rows(sb)] == [0, 0, 1]
    get = sb.metrics.registry.get_sample_value
    assert get("switchboard_messages_reprocessed_total", {"listener": "in"}) == 2
    assert get("switchboard_duplicates_total", {"listener": "in"}) == 1
