"""Drop files split into messages, and the batch ACK (protocol.md cases 58-61). Pure: bytes in.

Accepted layouts: ``[FHS] {BHS MSH... BTS} [FTS]`` and headerless files (one message after the
other). Lines end with CR, LF or CRLF; blank lines, ``#`` comment lines, MLLP framing bytes
(0B before a message, 1C after it) and a leading UTF-8 BOM are dropped. Messages come back with
CR-only segment separators. Either every message sits inside a BHS/BTS batch or there is no
batch at all; a file with FHS needs batches. BTS-1 and FTS-1, when valued, must match the
counts. Anything else rejects the whole file (:class:`BatchError`): a half-taken batch is worse
than a rejected one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.hl7.ack import build_ack, hl7_timestamp, new_control_id
from engine.hl7.header import DEFAULT_ENCODING_CHARS, UTF8_BOM, Header

_LINE_END = re.compile(rb"\r\n|\r|\n")
_TEXT_LINE_END = re.compile(r"[\r\n]")
_START_BLOCK = b"\x0b"
_END_BLOCK = b"\x1c"


class BatchError(ValueError):
    """The file breaks the batch protocol; the whole file is rejected."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Batch:
    """The messages of one file and its batch structure (empty ``bhs``: headerless file)."""

    messages: tuple[bytes, ...]
    fhs: bytes | None = None
    bhs: tuple[bytes, ...] = ()
    sizes: tuple[int, ...] = ()  # messages per BHS batch, in file order


def split_file(data: bytes) -> Batch:
    """Split a file into messages; raises :class:`BatchError` with the reason to reject it."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    splitter = _Splitter()
    for number, raw in enumerate(_LINE_END.split(data), 1):
        line = raw.lstrip(_START_BLOCK).rstrip(_END_BLOCK)
        if line.strip(b" \t") and not line.startswith(b"#"):
            splitter.feed(number, line)
    return splitter.finish()


def _field(segment: bytes, n: int) -> bytes:
    """Field n of a trailer segment (BTS/FTS: no encoding characters field)."""
    parts = segment[4:].split(segment[3:4]) if len(segment) > 3 else []
    return parts[n - 1] if n - 1 < len(parts) else b""


def _check_count(number: int, segment: bytes, actual: int, what: str) -> None:
    value = _field(segment, 1)
    if not value:
        return
    name = segment[:3].decode("ascii")
    if not value.isdigit():
        raise BatchError(f"line {number}: {name}-1 {value[:20].decode('latin-1')!r} is not a count")
    if int(value) != actual:
        raise BatchError(f"line {number}: {name}-1 says {int(value)} {what}, found {actual}")


class _Splitter:
    def __init__(self) -> None:
        self.fhs: bytes | None = None
        self.fts = False
        self.bhs: list[bytes] = []
        self.sizes: list[int] = []
        self.in_batch = False
        self.in_message = False
        self.messages: list[list[bytes]] = []

    def feed(self, number: int, line: bytes) -> None:
        seg = line[:3]
        if self.fts:
            raise BatchError(f"line {number}: segment {_name(seg)} after FTS")
        if seg == b"MSH":
            if not self.in_batch and (self.bhs or self.fhs is not None):
                raise BatchError(f"line {number}: MSH outside a BHS/BTS batch")
            self.messages.append([line])
            self.in_message = True
            if self.in_batch:
                self.sizes[-1] += 1
            return
        handler = _HANDLERS.get(seg)
        if handler is not None:
            self.in_message = False
            handler(self, number, line)
        elif self.in_message:
            self.messages[-1].append(line)
        elif not self.messages:
            raise BatchError(f"line {number}: segment {_name(seg)} before the first MSH")
        else:
            raise BatchError(f"line {number}: segment {_name(seg)} outside a message")

    def _fhs(self, number: int, line: bytes) -> None:
        if self.fhs is not None:
            raise BatchError(f"line {number}: nested FHS (a file has one FHS)")
        if self.messages or self.bhs:
            raise BatchError(f"line {number}: FHS must be the first segment of the file")
        _check_separator(number, line)
        self.fhs = line

    def _bhs(self, number: int, line: bytes) -> None:
        if self.in_batch:
            raise BatchError(f"line {number}: nested BHS (batch {len(self.bhs)} has no BTS)")
        if self.messages and not self.bhs:
            raise BatchError(f"line {number}: BHS after messages outside a batch")
        _check_separator(number, line)
        self.bhs.append(line)
        self.sizes.append(0)
        self.in_batch = True

    def _bts(self, number: int, line: bytes) -> None:
        if not self.in_batch:
            raise BatchError(f"line {number}: BTS without BHS")
        if not self.sizes[-1]:
            raise BatchError(f"line {number}: batch {len(self.bhs)} has BHS but no MSH")
        _check_count(number, line, self.sizes[-1], "messages")
        self.in_batch = False

    def _fts(self, number: int, line: bytes) -> None:
        if self.fhs is None:
            raise BatchError(f"line {number}: FTS without FHS")
        if self.in_batch:
            raise BatchError(f"line {number}: FTS inside batch {len(self.bhs)} (no BTS)")
        _check_count(number, line, len(self.bhs), "batches")
        self.fts = True

    def finish(self) -> Batch:
        if self.in_batch:
            if not self.sizes[-1]:
                raise BatchError(f"batch {len(self.bhs)} has BHS but no MSH")
            raise BatchError(f"batch {len(self.bhs)} has no BTS (file truncated?)")
        if self.fhs is not None and not self.fts:
            raise BatchError("FHS without FTS (file truncated?)")
        if not self.messages:
            raise BatchError("no MSH segment in the file")
        messages = tuple(b"\r".join(m) + b"\r" for m in self.messages)
        return Batch(messages, self.fhs, tuple(self.bhs), tuple(self.sizes))


_HANDLERS = {
    b"FHS": _Splitter._fhs,
    b"BHS": _Splitter._bhs,
    b"BTS": _Splitter._bts,
    b"FTS": _Splitter._fts,
}


def _name(seg: bytes) -> str:
    """A segment id for a reason text: three printable ASCII characters or a repr."""
    text = seg.decode("latin-1")
    return text if text.isascii() and text.isprintable() else repr(text)


def _check_separator(number: int, line: bytes) -> None:
    sep = line[3:4].decode("latin-1")
    if not sep or sep.isalnum() or not sep.isprintable() or sep == " ":
        raise BatchError(f"line {number}: {_name(line[:3])} has no usable field separator")


# batch ACK (HL7 v2 chapter 2, batch protocol) ---------------------------------------------


def _segment_text(segment: bytes | str) -> str:
    """One segment as text, without a line end."""
    text = segment.decode("latin-1") if isinstance(segment, bytes) else segment
    return _TEXT_LINE_END.split(text, maxsplit=1)[0]


def _response_header(segment: str, now: float) -> str:
    """FHS/BHS answering ``segment``: sender and receiver swapped, -11 new, -12 = inbound -11."""
    sep = segment[3]
    parts = segment[4:].split(sep)

    def f(n: int) -> str:  # FHS-n / BHS-n; parts[0] is -2
        return parts[n - 2] if n - 2 < len(parts) else ""

    fields = (segment[:3], f(2), f(5), f(6), f(3), f(4), hl7_timestamp(now))
    return sep.join((*fields, "", "", "", new_control_id(), f(11))) + "\r"


def _stand_in(segment: str) -> Header:
    """An MSH-like header from a BHS, to answer a message whose own MSH is unusable."""
    sep = segment[3]
    parts = segment[4:].split(sep) + [""] * 5
    enc = parts[0] if len(parts[0]) in (4, 5) else DEFAULT_ENCODING_CHARS
    return Header([sep, enc, *parts[1:5], "", "", "", "", "", ""], sep, enc, True)


def batch_ack(header_segment: bytes | str, results: Sequence, now: float) -> str:
    """The batch ACK for one inbound batch (BHS segment), as CR-terminated segments.

    ``results`` has one entry per message of the batch, in order, each with ``header``
    (:class:`Header` or None), ``code`` (AA/AE/AR, None when no ACK was possible), ``errors``
    and ``reason``: an :class:`engine.intake.Assessment` fits. Messages accepted with AA get no
    ACK, so a batch with zero ACK messages means all were accepted; BTS-1 counts the ACKs.
    """
    bhs = _segment_text(header_segment)
    acks = []
    for r in results:
        code = r.code or "AR"
        if code == "AA":
            continue
        header = r.header if r.header is not None else _stand_in(bhs)
        text = "" if r.errors else (r.reason or "")
        acks.append(build_ack(header, code, now=now, errors=r.errors, text=text))
    trailer = f"BTS{bhs[3]}{len(acks)}\r"
    return _response_header(bhs, now) + "".join(acks) + trailer


def file_ack(batch: Batch, results: Sequence, now: float) -> str | None:
    """The response to a whole file: ``[FHS] {batch ACK} [FTS]``; None for a headerless file."""
    if not batch.bhs:
        return None
    out = []
    start = 0
    for bhs, size in zip(batch.bhs, batch.sizes, strict=True):
        out.append(batch_ack(bhs, results[start : start + size], now))
        start += size
    if batch.fhs is not None:
        fhs = _segment_text(batch.fhs)
        out.insert(0, _response_header(fhs, now))
        out.append(f"FTS{fhs[3]}{len(batch.bhs)}\r")
    return "".join(out)
