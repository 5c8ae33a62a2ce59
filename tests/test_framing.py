"""protocol.md section A: MLLP framing on bytes, deterministic (StringTransport, Clock)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from engine.mllp.framing import FrameReceiver, frame

MSG1 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1\r"
MSG2 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|2|P|2.5\rPID|2\r"
MSG3 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|3|P|2.5\rPID|3\r"


class Recorder(FrameReceiver):
    def __init__(self, **kw):
        self.frames: list[bytes] = []
        self.errors: list[tuple[str, int]] = []
        self.junk: list[bytes] = []
        self.busy = False
        for k, v in kw.items():
            setattr(self, k, v)

    def frameReceived(self, payload: bytes) -> None:
        self.frames.append(payload)

    def frameError(self, reason: str, discarded: int) -> None:
        self.errors.append((reason, discarded))

    def junkReceived(self, junk: bytes) -> None:
        self.junk.append(junk)

    def isBusy(self) -> bool:
        return self.busy


def connect(**kw) -> tuple[Recorder, StringTransport, Clock]:
    clock = Clock()
    proto = Recorder(clock=clock, **kw)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def test_single_frame():  # case 1
    p, t, _ = connect()
    p.dataReceived(frame(MSG1))
    assert p.frames == [MSG1]
    assert not t.disconnecting


def test_thousand_sequential_frames():  # case 2
    p, _, _ = connect()
    msgs = [MSG1.replace(b"|1|P", f"|{i}|P".encode()) for i in range(1000)]
    for m in msgs:
        p.dataReceived(frame(m))
    assert p.frames == msgs


@pytest.mark.parametrize("chunk", [1, 2, 7, 13])
def test_frame_split_into_reads(chunk):  # case 3, per byte and odd sizes
    p, _, _ = connect()
    data = frame(MSG1) + frame(MSG2)
    for i in range(0, len(data), chunk):
        p.dataReceived(data[i : i + chunk])
    assert p.frames == [MSG1, MSG2]
    assert p.errors == [] and p.junk == []


def test_frame_split_per_segment():  # case 3, split at CR
    p, _, _ = connect()
    data = frame(MSG1)
    for part in data.split(b"\r"):
        p.dataReceived(part + b"\r" if part != data.split(b"\r")[-1] else part)
    assert p.frames == [MSG1]


def test_mid_frame_gap_beyond_timeout_discards_and_closes():  # case 4, 11, 15
    p, t, clock = connect(frame_timeout=5.0)
    p.dataReceived(b"\x0b" + MSG1[:20])
    clock.advance(4.9)
    assert not t.disconnecting
    p.dataReceived(MSG1[20:30])  # activity inside the frame restarts the gap
    clock.advance(4.9)
    assert not t.disconnecting
    clock.advance(0.2)
    assert t.disconnecting
    assert p.frames == []
    assert p.errors == [("frame_timeout", 30)]


def test_gap_shorter_than_timeout_is_fine():  # case 3 (HAPI: 100 ms gap -> AA)
    p, t, clock = connect(frame_timeout=5.0)
    p.dataReceived(b"\x0b" + MSG1[:20])
    clock.advance(0.1)
    p.dataReceived(MSG1[20:] + b"\x1c\x0d")
    assert p.frames == [MSG1]
    clock.advance(100)
    assert not t.disconnecting


def test_pipelined_frames_in_one_read():  # case 5, 6
    p, _, _ = connect()
    p.dataReceived(frame(MSG1))
    p.dataReceived(frame(MSG2) + frame(MSG3))
    assert p.frames == [MSG1, MSG2, MSG3]


def test_garbage_before_start_block():  # case 7
    p, t, _ = connect()
    p.dataReceived(b"GARBAGE" + frame(MSG1))
    assert p.frames == [MSG1]
    assert p.junk == [b"GARBAGE"]
    assert not t.disconnecting


def test_junk_with_start_and_end_blocks_then_two_frames():  # case 8
    p, _, _ = connect()
    p.dataReceived(b"j\x0bunk\x1cx" + frame(MSG1) + frame(MSG2))
    assert p.frames == [MSG1, MSG2]


def test_payload_without_start_block_is_not_a_frame():  # case 9
    p, _, _ = connect()
    p.dataReceived(MSG1 + b"\x1c\x0d")
    assert p.frames == []
    assert p.junk == [MSG1 + b"\x1c\x0d"]


def test_end_block_without_cr_strict_waits_then_times_out():  # case 10 (strict)
    p, t, clock = connect(frame_timeout=5.0)
    p.dataReceived(b"\x0b" + MSG1 + b"\x1c")
    assert p.frames == []
    clock.advance(5.1)
    assert t.disconnecting and p.frames == []


def test_end_block_without_cr_lenient_accepts():  # case 10 (lenient)
    p, _, _ = connect(require_end_of_data=False)
    p.dataReceived(b"\x0b" + MSG1 + b"\x1c")
    assert p.frames == [MSG1]
    p.dataReceived(b"\x0d" + frame(MSG2))  # the late CR is quiet junk
    assert p.frames == [MSG1, MSG2]
    assert p.junk == []


def test_lone_end_block_not_merged_with_next_frame():  # case 10: PH7 merges, we must not
    p, _, _ = connect(require_end_of_data=False)
    p.dataReceived(b"\x0b" + MSG1 + b"\x1c" + frame(MSG2))
    assert p.frames == [MSG1, MSG2]


def test_peer_closes_mid_frame():  # case 12
    p, _, _ = connect()
    p.dataReceived(b"\x0b" + MSG1[:25])
    p.connectionLost(None)
    assert p.frames == []
    assert p.errors == [("closed_in_frame", 25)]


def test_connect_then_close_is_quiet():  # case 13
    for _ in range(10):
        p, _, _ = connect()
        p.connectionLost(None)
        assert p.frames == [] and p.errors == [] and p.junk == []


def test_idle_timeout_closes_and_none_keeps_open():  # case 14
    p, t, clock = connect(idle_timeout=15.0)
    p.dataReceived(frame(MSG1))
    clock.advance(14.9)
    assert not t.disconnecting
    clock.advance(0.2)
    assert t.disconnecting
    assert p.errors == [("idle_timeout", 0)]
    _p2, t2, clock2 = connect(idle_timeout=None)
    clock2.advance(10_000)
    assert not t2.disconnecting
    assert clock2.getDelayedCalls() == []


def test_idle_timeout_waits_while_busy():
    p, t, clock = connect(idle_timeout=10.0)
    p.busy = True
    clock.advance(25)
    assert not t.disconnecting
    p.busy = False
    clock.advance(10.1)
    assert t.disconnecting


def test_idle_and_frame_timers_are_separate():  # case 15
    p, t, clock = connect(idle_timeout=15.0, frame_timeout=5.0)
    clock.advance(10)  # idle 10 s: fine
    p.dataReceived(b"\x0b" + MSG1[:10])  # frame begins: 5 s allowed in frame
    clock.advance(5.1)
    assert t.disconnecting
    assert p.errors == [("frame_timeout", 10)]


def test_empty_frame_ignored():  # case 16
    p, t, _ = connect()
    p.dataReceived(b"\x0b\x1c\x0d" + frame(MSG1))
    assert p.frames == [MSG1]
    assert p.errors == [("empty_frame", 0)]
    assert not t.disconnecting


def test_frame_above_max_size_closes_without_buffering_more():  # case 17
    p, t, _ = connect(max_frame_size=100)
    p.dataReceived(b"\x0b" + b"x" * 60)
    assert not t.disconnecting
    p.dataReceived(b"x" * 60)
    assert t.disconnecting
    assert p.frames == []
    assert p.errors == [("frame_too_large", 120)]
    p.dataReceived(b"more" + frame(MSG1))  # ignored after close
    assert p.frames == []


def test_frame_at_max_size_accepted():
    p, _, _ = connect(max_frame_size=len(MSG1))
    p.dataReceived(frame(MSG1))
    assert p.frames == [MSG1]


def test_start_block_inside_payload_is_data():  # case 18 (non-strict: treat as data)
    p, _, _ = connect()
    msg = MSG1.replace(b"PID|1", b"PID|1\x0bX")
    p.dataReceived(frame(msg))
    assert p.frames == [msg]


def test_end_block_inside_payload_keeps_reading():  # case 19
    p, _, _ = connect()
    msg = MSG1.replace(b"PID|1", b"PID|1\x1cX")
    p.dataReceived(frame(msg)[:30])
    p.dataReceived(frame(msg)[30:])
    assert p.frames == [msg]


def test_crlf_trailer_then_next_frame():  # case 20
    p, _, _ = connect()
    p.dataReceived(frame(MSG1) + b"\x0a" + frame(MSG2) + b"\x0a")
    assert p.frames == [MSG1, MSG2]
    assert p.junk == []  # a stray LF is not worth a warning


def test_new_limits_apply_to_an_open_connection():  # a reload that changes only limits
    p, t, clock = connect(frame_timeout=10.0, idle_timeout=None)
    clock.advance(20)
    assert not t.disconnecting  # no idle timeout yet
    p.setLimits(idle_timeout=30.0)
    clock.advance(9.9)
    assert not t.disconnecting
    clock.advance(0.1)  # counted from the last activity (30 s idle), not from the reload
    assert t.disconnecting and p.errors == [("idle_timeout", 0)]

    p, t, clock = connect(frame_timeout=10.0, idle_timeout=3600.0)
    p.dataReceived(b"\x0b" + MSG1[:20])
    clock.advance(2)
    p.setLimits(frame_timeout=3.0, idle_timeout=None)  # shorter: fires at 3 s, not 10
    clock.advance(0.9)
    assert not t.disconnecting
    clock.advance(0.1)
    assert t.disconnecting and p.errors == [("frame_timeout", 20)]

    p, t, clock = connect(frame_timeout=1.0)
    p.dataReceived(b"\x0b" + MSG1[:30])
    p.setLimits(frame_timeout=60.0)  # longer: the old 1 s timer no longer closes it
    clock.advance(59)
    assert not t.disconnecting
    p.dataReceived(MSG1[30:] + b"\x1c\x0d")
    assert p.frames == [MSG1]


def test_a_lower_max_frame_size_applies_to_the_frame_being_received():
    p, t, _ = connect(max_frame_size=4096)
    p.dataReceived(b"\x0b" + b"x" * 2000)
    p.setLimits(max_frame_size=1024)
    assert t.disconnecting and p.errors == [("frame_too_large", 2000)]
    with pytest.raises(TypeError):
        connect()[0].setLimits(ack="after_routing")
