"""MLLP framing on bytes: ``0B payload 1C 0D``, resynchronising on junk (protocol.md section A).

This layer knows nothing of HL7: it turns a byte stream into frames and enforces the frame size
limit and the idle and in-frame timeouts. Timers use the clock handed in, so tests drive them
with ``task.Clock``.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol

SB = 0x0B  # start block
EB = 0x1C  # end block
CR = 0x0D
START = b"\x0b"
END = b"\x1c"
# What may follow a start block when a second 0B inside a frame marks a real new frame.
_HEADER_IDS = (b"MSH", b"BHS", b"FHS")
_QUIET_JUNK = frozenset(b"\r\n\t \x00")


# Per-connection settings a running connection can take new values of (see setLimits).
LIMITS = ("max_frame_size", "frame_timeout", "idle_timeout", "require_end_of_data")


def frame(payload: bytes) -> bytes:
    return START + payload + b"\x1c\x0d"


class FrameReceiver(Protocol):
    """Bytes in, frames out. Subclasses implement :meth:`frameReceived`.

    Behaviour (case numbers from protocol.md):
    - bytes before a start block are dropped (7, 8, 9, 20); a frame ends at ``1C 0D`` and a
      lone ``1C`` inside the payload is data (19), unless ``require_end_of_data`` is off (10);
    - a second start block inside a frame that is followed by MSH/BHS/FHS restarts the frame
      (8); other 0B bytes are data (18);
    - an empty frame is ignored (16); a frame above ``max_frame_size`` closes the connection
      before more is buffered (17);
    - ``frame_timeout``: the longest gap between reads inside a frame (4, 11, 15);
      ``idle_timeout``: the longest wait between frames, None for never (14, 15).
    """

    clock: IReactorTime
    max_frame_size = 16 * 1024 * 1024
    frame_timeout: float | None = 10.0
    idle_timeout: float | None = None
    require_end_of_data = True

    _buf: bytearray
    _in_frame = False
    _start = 0  # index of the first payload byte in _buf while in a frame
    _scan = 0  # where the search for the end block resumes
    _last = 0.0
    _timer = None
    _closing = False
    frames_seen = 0
    bytes_seen = 0

    # hooks -----------------------------------------------------------------------------
    def frameReceived(self, payload: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def frameError(self, reason: str, discarded: int) -> None:
        """A framing problem: ``reason`` is a short code, ``discarded`` the bytes dropped."""

    def junkReceived(self, junk: bytes) -> None:
        """Non-whitespace bytes outside any frame were dropped."""

    def isBusy(self) -> bool:
        """True while work for this connection is pending (suppresses the idle timeout)."""
        return False

    # protocol --------------------------------------------------------------------------
    def connectionMade(self) -> None:
        self._buf = bytearray()
        self._last = self.clock.seconds()
        self._rearm()

    def setLimits(self, **limits) -> None:
        """New limits on an open connection (a reload). A frame already buffered past the new
        ``max_frame_size`` closes the connection; the timer runs again from the last activity
        with the new timeouts; ``require_end_of_data`` holds from the next read."""
        for key, value in limits.items():
            if key not in LIMITS:
                raise TypeError(f"not a connection limit: {key!r}")
            setattr(self, key, value)
        if self._closing:
            return
        if self._in_frame and len(self._buf) - self._start > self.max_frame_size:
            self._tooLarge(len(self._buf) - self._start)
            return
        self._rearm()

    def connectionLost(self, reason=None) -> None:
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._in_frame:
            discarded = len(self._buf) - self._start
            self._in_frame = False
            self.frameError("closed_in_frame", discarded)

    def touch(self) -> None:
        """Record activity (for the idle timeout), e.g. when an ACK was written."""
        self._last = self.clock.seconds()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.bytes_seen += len(data)
        self._last = self.clock.seconds()
        buf = self._buf
        buf += data
        pos = 0
        while not self._closing:
            if not self._in_frame:
                start = buf.find(START, pos)
                if start < 0:
                    self._junk(buf, pos, len(buf))
                    pos = len(buf)
                    break
                if start > pos:
                    self._junk(buf, pos, start)
                self._in_frame = True
                self._start = self._scan = start + 1
            end = buf.find(END, self._scan)
            while end >= 0:
                if end + 1 < len(buf):
                    if buf[end + 1] == CR:
                        pos = end + 2
                        break
                    if not self.require_end_of_data:
                        pos = end + 1
                        break
                    end = buf.find(END, end + 1)
                    continue
                if not self.require_end_of_data:
                    pos = end + 1
                    break
                end = -1  # 1C is the last byte so far: wait for the next read
                self._scan = len(buf) - 1
                break
            if end < 0:
                if end == -1 and self._scan < len(buf) - 1:
                    self._scan = len(buf)
                if len(buf) - self._start > self.max_frame_size:
                    self._tooLarge(len(buf) - self._start)
                    return
                break
            payload = bytes(buf[self._start : end])
            self._in_frame = False
            if len(payload) > self.max_frame_size:
                self._tooLarge(len(payload))
                return
            self._deliver(payload)
        if pos:
            del buf[:pos]
            if self._in_frame:
                self._start -= pos
                self._scan -= pos
        if self._in_frame and not self._closing:
            self._armFrameTimer()

    # internals -------------------------------------------------------------------------
    def _deliver(self, payload: bytes) -> None:
        if SB in payload:
            payload = self._resync(payload)
        if not payload:
            self.frameError("empty_frame", 0)
            return
        self.frames_seen += 1
        self.frameReceived(payload)

    def _resync(self, payload: bytes) -> bytes:
        """A 0B inside a frame followed by a header segment starts a new frame (case 8)."""
        idx = payload.rfind(START)
        while idx >= 0:
            if payload[idx + 1 : idx + 4] in _HEADER_IDS:
                self._junkBytes(payload[:idx])
                return payload[idx + 1 :]
            idx = payload.rfind(START, 0, idx)
        return payload

    def _junk(self, buf: bytearray, a: int, b: int) -> None:
        if a < b:
            self._junkBytes(bytes(buf[a:b]))

    def _junkBytes(self, junk: bytes) -> None:
        if junk and not all(c in _QUIET_JUNK for c in junk):
            self.junkReceived(junk)

    def _tooLarge(self, size: int) -> None:
        self._in_frame = False
        self._buf = bytearray()
        self.frameError("frame_too_large", size)
        self._close()

    def _rearm(self) -> None:
        """The frame or idle timer, from the last activity, with the current timeouts."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        timeout = self.frame_timeout if self._in_frame else self.idle_timeout
        if timeout:
            delay = max(0.0, self._last + timeout - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._onTimer)

    def _armFrameTimer(self) -> None:
        if not self.frame_timeout:
            return
        deadline = self._last + self.frame_timeout
        timer = self._timer
        if timer is not None and timer.active():
            if timer.getTime() <= deadline:
                return
            timer.cancel()
        self._timer = self.clock.callLater(max(0.0, deadline - self.clock.seconds()), self._onTimer)

    def _onTimer(self) -> None:
        self._timer = None
        if self._closing:
            return
        now = self.clock.seconds()
        if self._in_frame and self.frame_timeout:
            deadline = self._last + self.frame_timeout
            if now >= deadline:
                discarded = len(self._buf) - self._start
                self._in_frame = False
                self._buf = bytearray()
                self.frameError("frame_timeout", discarded)
                self._close()
                return
        elif self.idle_timeout:
            deadline = self._last + self.idle_timeout
            if now >= deadline and not self.isBusy():
                self.frameError("idle_timeout", 0)
                self._close()
                return
            if now >= deadline:
                deadline = now + self.idle_timeout
        else:
            return
        self._timer = self.clock.callLater(max(0.0, deadline - now), self._onTimer)

    def _close(self) -> None:
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.transport.loseConnection()
