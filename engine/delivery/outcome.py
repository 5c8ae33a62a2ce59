"""What a sender hands back for one delivery attempt, and what the queue does with it.

Outcomes stay distinct (protocol.md section D): an AA/CA or a 2xx is delivered; AE, a
timeout, a refused connection, an invalid ACK or a 5xx is retried per the destination's
policy; AR/CR or a 4xx is dead at once (by default); 429/503 honour Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"  # delivered
RETRY = "retry"  # try again per the retry policy
DEAD = "dead"  # do not try again: dead letter (or hold the queue with on_failure: block)

RESPONSE_EXCERPT = 2000  # characters of a peer's response kept with the delivery


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued output, as the worker hands it to a sender."""

    id: int
    message_id: int
    channel: str
    destination: str
    payload: bytes
    content_type: str
    attempts: int = 0  # attempts made before this one
    created_at: float = 0.0
    control_id: str = ""  # MSH-10 of the payload when it is HL7 (for ACK matching)


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # OK | RETRY | DEAD
    code: str | None = None  # MSA-1 (AA, AE, AR, CA...) or the HTTP status ("503")
    error: str | None = None  # why it failed, for operators (no message content)
    response: str | None = None  # the peer's reply: ACK text or HTTP body excerpt
    retry_after: float | None = None  # seconds the peer asked us to wait (Retry-After)

    @classmethod
    def ok(cls, code: str | None = None, response: str | None = None) -> Outcome:
        return cls(OK, code, None, _excerpt(response))

    @classmethod
    def retry(cls, error: str, code: str | None = None, response: str | None = None,
              retry_after: float | None = None) -> Outcome:  # fmt: skip
        return cls(RETRY, code, error, _excerpt(response), retry_after)

    @classmethod
    def dead(cls, error: str, code: str | None = None, response: str | None = None) -> Outcome:
        return cls(DEAD, code, error, _excerpt(response))


def _excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= RESPONSE_EXCERPT else text[:RESPONSE_EXCERPT] + "..."


def control_id_of(payload: bytes) -> str:
    """MSH-10 of an ER7 payload ('' when it is not HL7)."""
    end = payload.find(b"\r")
    first = (payload if end < 0 else payload[:end]).decode("latin-1")
    if not first.startswith("MSH") or len(first) < 4:
        return ""
    fields = first.split(first[3])
    return fields[9] if len(fields) > 9 else ""
