"""A message a channel step failed is processed again: the sender's retry after the channel is
fixed and reloaded, and an operator's replay (admin API), each stored as a new message linked
to the one that failed."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from sqlalchemy import select

from engine.store.schema import deliveries, messages

from .engine_harness import in_thread, send_all, start_engine
from .test_admin_api import Client

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


@pytest_twisted.ensureDeferred
async def test_admin_replay_of_an_errored_message_runs_the_current_config(sb, tmp_path):
    c = Client(sb)
    port = sb.port_of("in")
    acks = await in_thread(send_all, port, [oru("R7"), oru("R8", patient="P200")])
    assert [a.split(b"\r")[1] for a in acks] == [b"MSA|AE|R7", b"MSA|AE|R8"]
    (r7, r8) = rows(sb)
    # replayed while the channel is still broken: a new errored message, linked
    out = await c.post(f"/messages/{r7.id}/replay")
    assert (out["status"], out["ack_code"]) == ("errored", "AE")
    still_broken = out["new_message_id"]
    (tmp_path / "channels" / "lab.yaml").write_text(FIXED)
    assert (await c.post("/reload"))["ok"] is True
    out = await c.post(f"/messages/{r7.id}/replay")
    new = out["new_message_id"]
    assert out["message_id"] == r7.id and (out["status"], out["ack_code"]) == ("routed", "AA")
    assert "MSA|AA|R7" in out["ack"]
    old = await c.get(f"/messages/{r7.id}")
    assert old["status"] == "errored" and old["reprocessed_as"] == [still_broken, new]
    detail = await c.get(f"/messages/{new}")
    assert detail["reprocess_of"] == r7.id and detail["status"] == "routed"
    assert detail["peer"] == f"replay:{r7.id}" and detail["raw"] == oru("R7").decode()
    assert [d["destination"] for d in detail["deliveries"]] == ["archive"]
    assert "body_hash" not in detail

    # an edited body with the same MSH-10 is taken in too (it was answered with the stale
    # AE and not stored), linked to the message it replaces
    edited = oru("R8", pv1="I", patient="P200").decode().replace("\r", "\n")
    again = await c.post(f"/messages/{r8.id}/replay", {"body": edited})
    assert (again["status"], again["ack_code"]) == ("routed", "AA")
    fixed = await c.get(f"/messages/{again['new_message_id']}")
    assert fixed["reprocess_of"] == r8.id and "PV1|1|I" in fixed["raw"]
    # the sender's own resend of the original is now a duplicate of the edited message
    (resent,) = await in_thread(send_all, port, [oru("R8", patient="P200")])
    assert resent.split(b"\r")[1] == b"MSA|AA|R8"
    assert resent.decode() == fixed["ack"]

    # a routed message keeps the old behaviour: its deliveries go back to their queue
    out = await c.post(f"/messages/{new}/replay")
    assert out == {"message_id": new, "replayed": 0, "deliveries": []}

    entries = (await c.get("/audit?limit=10"))["entries"]
    got = [(e["action"], e["target"], e["detail"]) for e in reversed(entries)]
    assert [g[:2] for g in got] == [
        ("replay", f"message {r7.id}"), ("reload", "config"), ("replay", f"message {r7.id}"),
        ("replay-edited", f"message {r8.id}"), ("replay", f"message {new}"),
    ]  # fmt: skip
    assert got[0][2] == {"reprocessed_as": still_broken, "status": "errored", "ack_code": "AE",
                         "listener": "in"}  # fmt: skip
    assert got[2][2] == {"reprocessed_as": new, "status": "routed", "ack_code": "AA",
                         "listener": "in"}  # fmt: skip
    assert got[3][2]["new_message"] == again["new_message_id"]
    assert not any("P100" in json.dumps(e) or "P200" in json.dumps(e) for e in entries)


@pytest_twisted.ensureDeferred
async def test_replay_needs_the_body(sb):
    c = Client(sb)
    (ack,) = await in_thread(send_all, sb.port_of("in"), [oru("R9")])
    assert b"MSA|AE|R9" in ack
    (r9,) = rows(sb)
    with sb.store.engine.begin() as conn:  # as metadata_only leaves a message with no output
        conn.execute(messages.update().where(messages.c.id == r9.id).values(raw=b""))
    err = (await c.post(f"/messages/{r9.id}/replay", expect=409))["error"]
    assert "body" in err and "--body-file" in err
    assert (await c.post("/messages/999/replay", expect=404))["error"] == "no message 999"
    assert len(rows(sb)) == 1
