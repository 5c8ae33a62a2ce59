"""ACK messages laid out as protocol.md section 2 prescribes."""

from __future__ import annotations

import functools
import itertools
import os
import time
from dataclasses import dataclass

from engine.hl7.escape import escape
from engine.hl7.header import Header

# HL7 table 0357 (message error condition codes) used by the engine.
ERROR_TEXT = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}

ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


@dataclass(frozen=True, slots=True)
class AckError:
    """One ERR repetition: where (ERL: segment, occurrence, field, repetition, component,
    subcomponent) and why."""

    code: int
    detail: str = ""
    segment: str = ""
    field: int | None = None
    occurrence: int = 1
    component: int | None = None
    repetition: int | None = None
    subcomponent: int | None = None

    def location(self, comp: str) -> str:
        """ERR-2 (ERL): SEG^occurrence^field^repetition^component^subcomponent."""
        if not self.segment:
            return ""
        rep = self.repetition
        if rep is None and self.component is not None:
            rep = 1
        parts = (self.segment, self.occurrence, self.field, rep, self.component,
                 self.subcomponent)  # fmt: skip
        return comp.join("" if p is None else str(p) for p in parts).rstrip(comp)

    @property
    def text(self) -> str:
        return ERROR_TEXT.get(self.code, "Application error")


_ID_PREFIX = os.urandom(4).hex().upper()  # per process: ids differ across restarts
_id_counter = itertools.count(int.from_bytes(os.urandom(3), "big") << 16)


def new_control_id() -> str:
    """A 20-character unique MSH-10 for an outbound ACK (ST 20 in v2.5).

    A random per-process prefix and a counter: unique without a system call per ACK
    (``os.urandom`` per message was a measurable share of intake's CPU)."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFF:012X}"


_last_stamp: tuple[int, str] = (-1, "")


def hl7_timestamp(now: float) -> str:
    """DTM with seconds and an explicit UTC offset (formatted once per second)."""
    global _last_stamp
    second = int(now)
    if second != _last_stamp[0]:
        _last_stamp = (second, time.strftime("%Y%m%d%H%M%S+0000", time.gmtime(second)))
    return _last_stamp[1]


@functools.lru_cache(maxsize=64)
def _version_at_least(version: str, major: int, minor: int) -> bool:
    try:
        parts = version.split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return True  # blank or unreadable version: use the current layout


def build_ack(
    header: Header,
    code: str,
    *,
    now: float,
    control_id: str | None = None,
    errors: tuple[AckError, ...] | list[AckError] = (),
    text: str = "",
) -> str:
    """Return the ACK for ``header`` as CR-terminated segments (no MLLP framing).

    MSH-1/2 echo the inbound delimiters, sender and receiver swap, MSH-9 is ACK^<trigger>
    (with ^ACK from v2.4 on; the inbound MSH-9.3 is never copied), MSH-11/12 are copied and
    MSH-15/16 stay empty: an ACK is not acknowledged.
    """
    sep = header.sep
    enc = header.encoding_chars if header.encoding_ok else "^~\\&"
    comp, rep, _, sub = enc[0], enc[1], enc[2], enc[3]
    version = header.version
    v25 = _version_at_least(version, 2, 5)
    trigger = header.trigger
    msh9 = (
        f"ACK{comp}{trigger}{comp}ACK"
        if _version_at_least(version, 2, 4)
        else (f"ACK{comp}{trigger}" if trigger else "ACK")
    )
    msh = sep.join(
        (
            "MSH",
            enc,
            header.receiving_application,
            header.receiving_facility,
            header.sending_application,
            header.sending_facility,
            hl7_timestamp(now),
            "",
            msh9,
            control_id or new_control_id(),
            header.field(11),
            header.field(12),
        )
    )
    if errors and not text and not v25:
        text = errors[0].text
    msa = f"MSA{sep}{code}{sep}{header.control_id}"
    if text:
        msa += sep + escape(text, sep, enc)
    segments = [msh, msa]
    if errors:
        if v25:
            for e in errors:
                location = e.location(comp)
                cwe = comp.join((str(e.code), e.text, "HL70357"))
                if e.detail:
                    cwe += comp * 6 + escape(e.detail, sep, enc)
                segments.append(sep.join(("ERR", "", location, cwe, "E")))
        else:
            reps = []
            for e in errors:
                ce = sub.join((str(e.code), e.text, "HL70357"))
                if e.detail:
                    ce += sub * 2 + escape(e.detail, sep, enc)
                reps.append(comp.join((e.segment, "", str(e.field or ""), ce)))
            segments.append(sep.join(("ERR", rep.join(reps))))
    return "\r".join(segments) + "\r"
