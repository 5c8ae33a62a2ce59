"""A running engine on 127.0.0.1 against python-hl7's MLLP client and raw sockets."""

from __future__ import annotations

import socket

import hl7.client
import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor
from twisted.internet.task import deferLater

from engine.mllp.client import BlockingMLLPClient, ack_code
from engine.mllp.framing import frame
from engine.store.schema import messages

from .engine_harness import in_thread, settle, start_engine

CONFIG = """
listeners:
  - name: mllp-in
    mllp: "tcp:0:interface=127.0.0.1"
  - name: routed
    mllp: "tcp:0:interface=127.0.0.1"
    ack: after_routing
    max_connections: 2
routes:
  - {match: {type: ADT}, to: [adt]}
"""


def adt(n, extra="") -> bytes:
    return (f"MSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|C{n}|P|2.5{extra}\r"
            "PID|1||123^^^H^MR\r").encode()  # fmt: skip


@pytest.fixture
def engine(tmp_path, store_url):
    sb = start_engine(tmp_path, CONFIG, store=store_url)
    yield sb
    pytest_twisted.blockon(sb.stopService())


def rows(sb):
    with sb.store.engine.connect() as conn:
        return conn.execute(select(messages).order_by(messages.c.id)).mappings().all()


def _python_hl7_send(port, payloads):
    with hl7.client.MLLPClient("127.0.0.1", port) as client:
        return [client.send_message(p) for p in payloads]


@pytest_twisted.inlineCallbacks
def test_python_hl7_client_gets_aa_and_row_is_stored(engine):  # case 1, 39
    port = engine.port_of("mllp-in")
    (reply,) = yield in_thread(_python_hl7_send, port, [adt(1)])
    assert reply.startswith(b"\x0bMSH|^~\\&|RCV|RF|SND|SF|")
    assert b"\rMSA|AA|C1\r" in reply and reply.endswith(b"\x1c\x0d")
    (row,) = rows(engine)
    assert (row["control_id"], row["message_type"], row["trigger"], row["status"]) == (
        "C1", "ADT", "A01", "routed")  # fmt: skip
    assert (row["sending_application"], row["sending_facility"], row["listener"]) == (
        "SND", "SF", "mllp-in")  # fmt: skip
    assert row["raw"] == adt(1) and row["ack"] == reply[1:-2]
    assert row["peer"].startswith("127.0.0.1:")


@pytest_twisted.inlineCallbacks
def test_thousand_messages_in_order_on_one_connection(engine):  # case 2
    port = engine.port_of("mllp-in")

    def run():
        with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
            return [c.send(adt(i)) for i in range(1000)]

    replies = yield in_thread(run)
    assert [r.split(b"\r")[1] for r in replies] == [f"MSA|AA|C{i}".encode() for i in range(1000)]
    assert len(rows(engine)) == 1000


@pytest_twisted.inlineCallbacks
def test_pipelined_frames_in_one_write(engine):  # case 5
    port = engine.port_of("mllp-in")

    def run():
        with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
            c.sock.sendall(b"GARBAGE" + frame(adt(1)) + frame(adt(2)) + b"\n" + frame(adt(3)))
            return [c.read_frame() for _ in range(3)]

    replies = yield in_thread(run)
    assert [r.split(b"\r")[1] for r in replies] == [b"MSA|AA|C1", b"MSA|AA|C2", b"MSA|AA|C3"]


@pytest_twisted.inlineCallbacks
def test_duplicate_gets_first_ack_byte_for_byte(engine):  # case 47
    port = engine.port_of("mllp-in")
    first, again = yield in_thread(_python_hl7_send, port, [adt(7), adt(7)])
    assert first == again
    (row,) = rows(engine)
    assert row["duplicates"] == 1


@pytest_twisted.inlineCallbacks
def test_after_routing_no_route_is_ar_and_stored_unrouted(engine):  # case 40
    port = engine.port_of("routed")
    msg = adt(9).replace(b"ADT^A01", b"SIU^S12")
    (reply,) = yield in_thread(_python_hl7_send, port, [msg])
    assert b"\rMSA|AR|C9\r" in reply
    assert b"|200^Unsupported message type^HL70357" in reply
    (row,) = rows(engine)
    assert row["status"] == "unrouted" and row["ack_code"] == "AR"


@pytest_twisted.inlineCallbacks
def test_no_msh_stored_rejected_and_connection_usable(engine):  # case 36
    port = engine.port_of("mllp-in")

    def run():
        with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
            c.sock.sendall(frame(b"INVALID PAYLOAD"))
            return c.send(adt(2))

    reply = yield in_thread(run)
    assert b"MSA|AA|C2" in reply
    got = rows(engine)
    assert [(r["status"], r["ack_code"]) for r in got] == [("rejected", None), ("routed", "AA")]
    assert got[0]["raw"] == b"INVALID PAYLOAD" and "not MSH" in got[0]["reason"]


@pytest_twisted.inlineCallbacks
def test_connection_limit_refuses_extra_connection(engine):  # case 21
    port = engine.port_of("routed")

    def run():
        a = BlockingMLLPClient("127.0.0.1", port, timeout=5)
        b = BlockingMLLPClient("127.0.0.1", port, timeout=5)
        a.send(adt(1))
        b.send(adt(2))
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        refused = c.recv(10) == b""  # closed at once
        c.close()
        still = ack_code(a.send(adt(3)))
        a.close()
        b.close()
        return refused, still

    refused, still = yield in_thread(run)
    assert refused and still == "AA"


@pytest_twisted.inlineCallbacks
def test_probes_store_nothing(engine):  # case 13
    port = engine.port_of("mllp-in")

    def run():
        for _ in range(10):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with BlockingMLLPClient("127.0.0.1", port, timeout=5) as c:
            return ack_code(c.send(adt(1)))

    assert (yield in_thread(run)) == "AA"
    assert len(rows(engine)) == 1


@pytest_twisted.inlineCallbacks
def test_peer_closes_before_ack_message_stays_stored(engine):  # case 46
    port = engine.port_of("mllp-in")

    def run():
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(frame(adt(5)))
        s.close()

    yield in_thread(run)
    for _ in range(500):  # bounded: at most 5 s for the frame to arrive and commit
        if rows(engine):
            break
        yield deferLater(reactor, 0.01, lambda: None)
    yield settle(engine)
    assert [r["control_id"] for r in rows(engine)] == ["C5"]


@pytest_twisted.inlineCallbacks
def test_metrics_and_healthz_on_admin(tmp_path):
    import treq

    sb = start_engine(tmp_path, CONFIG + 'admin: {listen: "tcp:0:interface=127.0.0.1"}\n')
    try:
        port = sb.port_of("mllp-in")
        yield in_thread(_python_hl7_send, port, [adt(1), adt(1)])
        admin = sb.port_of("admin")
        resp = yield treq.get(f"http://127.0.0.1:{admin}/metrics")
        body = yield resp.text()
        assert 'switchboard_messages_received_total{listener="mllp-in"} 2.0' in body
        assert 'switchboard_acks_total{code="AA",listener="mllp-in"} 2.0' in body
        assert 'switchboard_duplicates_total{listener="mllp-in"} 1.0' in body
        assert "switchboard_ack_latency_seconds_bucket" in body
        assert "switchboard_store_commit_seconds_count" in body
        assert "switchboard_store_batch_size_bucket" in body
        resp = yield treq.get(f"http://127.0.0.1:{admin}/healthz")
        assert resp.code == 200
        health = yield resp.json()
        assert health["status"] == "ok" and health["store"] == "ok"
        resp = yield treq.get(f"http://127.0.0.1:{admin}/readyz")
        ready = yield resp.json()
        assert resp.code == 200
        assert ready["listeners"] == {"mllp-in": "running", "routed": "running"}
        assert ready["destinations"] == {}
    finally:
        yield sb.stopService()


@pytest_twisted.inlineCallbacks
def test_patient_id_indexed_for_search(engine):
    port = engine.port_of("mllp-in")
    payload = adt(3).replace(b"PID|1||123^^^H^MR", b"PID|1||M\\T\\1~X9^^^H^MR")
    yield in_thread(_python_hl7_send, port, [payload])
    (row,) = rows(engine)
    assert row["patient_id"] == "M&1"  # first repetition, component 1, unescaped
