"""Same MSH-10 from the same sender with a different body: never dropped silently. A warning
(ids and codes only), its own metric, and the listener's on_conflicting_duplicate decides."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from sqlalchemy import select
from structlog.testing import capture_logs

from engine.store.schema import deliveries, messages

from .engine_harness import in_thread, send_all, start_engine

ROUTES = "routes:\n  - {match: {type: ADT}, to: [adt]}\n"


def adt(patient: str, stamp: str = "20240101120000", control_id: str = "C1") -> bytes:
    return (f"MSH|^~\\&|REG|H|X|H|{stamp}||ADT^A01|{control_id}|P|2.5\r"
            f"PID|1||{patient}^^^H^MR||DOE^JANE\r").encode()  # fmt: skip


def start(tmp_path, action: str | None):
    option = f", on_conflicting_duplicate: {action}" if action else ""
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n  - {name: archive, file: out}\n"
    )
    listener = f'listeners:\n  - {{name: in, mllp: "tcp:0:interface=127.0.0.1"{option}}}\n'
    return start_engine(tmp_path, listener + ROUTES, channels=())


def stored(sb) -> list:
    m = messages.c
    with sb.store.engine.connect() as conn:
        return conn.execute(
            select(m.id, m.status, m.ack_code, m.reason, m.conflicts_with, m.duplicates,
                   m.patient_id).order_by(m.id)
        ).all()  # fmt: skip


def output_owners(sb) -> list[int]:
    with sb.store.engine.connect() as conn:
        return list(conn.execute(select(deliveries.c.message_id)).scalars())


@pytest.mark.parametrize("action", ["ack_first", "process", "reject", None])
@pytest_twisted.inlineCallbacks
def test_conflicting_duplicate(tmp_path, action):
    sb = start(tmp_path, action)
    try:
        port = sb.port_of("in")
        with capture_logs() as logs:
            first, restamped, other = yield in_thread(
                send_all, port, [adt("P100"), adt("P100", stamp="20240101120500"), adt("P200")]
            )
    finally:
        yield sb.stopService()
    assert first.split(b"\r")[1] == b"MSA|AA|C1"
    # a resend with MSH-7 stamped again is the same message: a plain duplicate
    assert restamped == first
    rows = stored(sb)
    a = rows[0]
    if action == "ack_first":  # the first ACK again, nothing of the second is kept
        assert other == first
        assert len(rows) == 1 and a.duplicates == 2
        assert output_owners(sb) == [a.id]
    elif action == "process":  # taken in as a message of its own
        assert other.split(b"\r")[1] == b"MSA|AA|C1" and other != first
        (b,) = rows[1:]
        assert (b.status, b.conflicts_with, b.patient_id) == ("routed", a.id, "P200")
        assert output_owners(sb) == [a.id, b.id] and a.duplicates == 1
    else:  # reject, the default: AR saying why, kept as rejected, not routed
        lines = other.decode().split("\r")
        assert lines[1] == "MSA|AR|C1"
        assert lines[2].startswith("ERR||MSH^1^10|205^Duplicate key identifier^HL70357^^^^^^")
        assert "already taken in with a different body" in lines[2]
        (b,) = rows[1:]
        assert (b.status, b.ack_code, b.conflicts_with) == ("rejected", "AR", a.id)
        assert "already taken in with a different body" in b.reason
        assert output_owners(sb) == [a.id] and a.duplicates == 1
    get = sb.metrics.registry.get_sample_value
    labels = {"listener": "in", "action": action or "reject"}
    assert get("switchboard_conflicting_duplicates_total", labels) == 1
    assert get("switchboard_duplicates_total", {"listener": "in"}) == 1  # the re-stamped one
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "conflicting duplicate: same MSH-10 and sender, different body"
    assert warning["first_message_id"] == a.id and warning["control_id"] == "C1"
    assert warning["action"] == (action or "reject")
    assert warning["message_id"] == (None if action == "ack_first" else rows[1].id)
    assert not any("P200" in json.dumps(e, default=str) for e in logs)  # ids and codes only


@pytest_twisted.inlineCallbacks
def test_other_sender_or_control_id_is_no_conflict(tmp_path):
    sb = start(tmp_path, None)
    try:
        other_sender = adt("P200").replace(b"|REG|H|", b"|REG|OTHER|")
        acks = yield in_thread(
            send_all, sb.port_of("in"), [adt("P100"), other_sender, adt("P300", control_id="C2")]
        )
    finally:
        yield sb.stopService()
    assert [a.split(b"\r")[1][:7] for a in acks] == [b"MSA|AA|"] * 3
    assert [r.status for r in stored(sb)] == ["routed"] * 3
    assert sb.metrics.registry.get_sample_value(
        "switchboard_conflicting_duplicates_total", {"listener": "in", "action": "reject"}
    ) == 0  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_conflict_in_a_dropped_batch_file_is_in_its_batch_ack(tmp_path):
    """Both messages of one file in one write: the second is rejected (the default) and the
    batch ACK carries its AR, while the first is accepted (no ACK in the batch)."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    drop = tmp_path / "drop"
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text("name: adt\n")
    sb = start_engine(tmp_path, f"listeners:\n  - {{name: drop, directory: {drop}, "
                      "poll_interval: 50ms, settle_time: 0s}\n" + ROUTES, channels=())  # fmt: skip
    try:
        body = b"BHS|^~\\&|REG|H\r" + adt("P100") + adt("P200") + b"BTS|2\r"
        (drop / "f.hl7").write_bytes(body)
        for _ in range(500):  # bounded: 5 s
            if (drop / "done" / "f.hl7.ack").exists():
                break
            yield deferLater(reactor, 0.01, lambda: None)
        ack = (drop / "done" / "f.hl7.ack").read_bytes().decode().split("\r")
    finally:
        yield sb.stopService()
    assert ack[0].startswith("BHS|") and ack[-2] == "BTS|1"
    assert ack[2] == "MSA|AR|C1" and ack[3].startswith("ERR||MSH^1^10|205^")
    first, second = stored(sb)
    assert (first.status, second.status, second.conflicts_with) == ("routed", "rejected", first.id)


def test_a_wrong_action_is_a_config_error(tmp_path):
    from engine.components import load_config
    from engine.config import ConfigError

    from .engine_harness import write_config

    path = write_config(tmp_path, 'listeners:\n  - {name: in, mllp: "tcp:0", '
                        "on_conflicting_duplicate: rejct}\n", channels=())  # fmt: skip
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = exc.value.problems
    assert problem.format().endswith(
        "routes.yaml:3:57: invalid value 'rejct' for 'on_conflicting_duplicate' (allowed: "
        "ack_first, process, reject); did you mean 'reject'?"
    )
