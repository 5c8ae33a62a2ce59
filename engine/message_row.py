"""The columns intake derives for a message row from its bytes and channel results: the
patient id (PID-3.1, for search), the duplicate key and body fingerprint (engine.store.dedup),
and the channel_runs and deliveries rows. Pure functions of their arguments."""

from __future__ import annotations

import re

from engine.channel import PASSED, ChannelResult
from engine.hl7.escape import unescape
from engine.hl7.header import Header


def dedup_key(h: Header) -> str:
    return f"{h.sending_application}\x1f{h.sending_facility}\x1f{h.control_id}"


def fingerprint_parts(norm: bytes, sep: str) -> tuple:
    """What a body fingerprint covers (engine.store.dedup): the message with CR separators,
    except MSH-7 (some senders stamp the time again when they resend) and trailing CRs."""
    pattern = _MSH7.get(sep)
    if pattern is None:
        e = re.escape(sep.encode("latin-1", "replace"))
        field = rb"[^" + e + rb"\r]*"
        pattern = _MSH7[sep] = re.compile(
            rb"MSH" + e + rb"(?:" + field + e + rb"){5}(" + field + rb")"
        )
    end = len(norm)
    while end and norm[end - 1] == 13:
        end -= 1
    m = pattern.match(norm)
    if m is None:
        return (norm[:end],)
    return (norm[: m.start(1)], norm[m.end(1) : end])


_MSH7: dict[str, re.Pattern] = {}  # field separator -> MSH-1..6 then MSH-7 as group 1


def _patient_id(norm: bytes, h: Header | None) -> str | None:
    """PID-3.1 of the first repetition, read from the bytes (no parse): an index for search."""
    if h is None:
        return None
    sep = h.sep.encode("latin-1", "replace")
    start = norm.find(b"\rPID" + sep)
    if start < 0:
        return None
    end = norm.find(b"\r", start + 1)
    seg = norm[start + 1 : end if end > 0 else None]
    if h.charset in _ASCII_SAFE:  # split the bytes: a separator byte is always a separator
        fields = seg.split(sep, 4)
        pid3 = fields[3].decode(h.charset, errors="replace") if len(fields) > 3 else None
    else:  # Shift_JIS, Big5...: a '|' byte can be half of a character
        fields = seg.decode(h.charset, errors="replace").split(h.sep, 4)
        pid3 = fields[3] if len(fields) > 3 else None
    if pid3 is None:
        return None
    enc = h.encoding_chars
    value = pid3.split(enc[1], 1)[0].split(enc[0], 1)[0]
    return unescape(value, h.sep, enc)[:64] or None


# Codecs in which an ASCII byte only ever stands for that ASCII character.
_ASCII_SAFE = frozenset(
    ["ascii", "utf-8", "latin-1", "cp1252", *(f"iso-8859-{i}" for i in range(1, 17))]
)


def _children(results: list[ChannelResult], now: float) -> tuple[list[dict], list[dict]]:
    """channel_runs and deliveries rows for one message (message_id set by the writer).

    A channel run is recorded when it says something the message row and its deliveries do
    not: filtered or errored (where and why), or flags raised. A plain pass is implied by the
    message's routes; leaving it out saves a row per message on the hot path.
    """
    runs, deliveries = [], []
    for r in results:
        if r.status != PASSED or r.flags:
            runs.append(
                {
                    "channel": r.channel,
                    "status": r.status,
                    "step": r.step,
                    "step_kind": r.step_kind,
                    "reason": r.reason,
                    "flags": ",".join(r.flags) or None,
                    "created_at": now,
                }
            )
        for out in r.outputs:
            deliveries.append(
                {
                    "channel": r.channel,
                    "destination": out.destination,
                    "status": "pending",
                    "payload": out.payload,
                    "content_type": out.content_type,
                    "created_at": now,
                }
            )
    return runs, deliveries
