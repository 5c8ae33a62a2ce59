"""Duplicate detection's decision, for the store writer (engine.store.writer).

A row with a ``dedup_key`` (sending application, facility, MSH-10) is compared with the
earlier rows that share it within its window, stored or earlier in the same batch:

* one that was taken in (not errored or rejected, not answered AE/AR/CE/CR) with the same
  body fingerprint: a **duplicate**; the sender gets that message's ACK again;
* otherwise one that was taken in with another body: a **conflict** (same MSH-10 from the
  same sender, different body); the row's ``_on_conflict`` policy decides (see below);
* otherwise one that failed (errored or rejected): a **retry**; it is processed anew and
  linked to the failed one (``reprocess_of``), so a sender's resend after a fix goes through;
* otherwise: new.

``_on_conflict`` is a callable given the row: it returns None to answer with the first ACK
(ack_first; also what a row without a policy gets), ``{}`` to store the row as it is
(process), or the columns to change before it is stored (reject). It runs on the writer's
thread, inside the transaction.

Fingerprints (``body_hash``) begin with a 2-byte tag naming the key they were made with
(engine.store.crypto); two made under different keys, or a row stored without one, cannot be
compared and count as the same body, as every duplicate did before fingerprints existed.
"""

from __future__ import annotations

NEW, DUPLICATE, CONFLICT, RETRY = "new", "duplicate", "conflict", "retry"
FAILED_STATUSES = frozenset({"errored", "rejected"})
NEGATIVE_ACKS = frozenset({"AE", "AR", "CE", "CR"})
_TAG = 2  # bytes of key tag at the start of a fingerprint


class Candidate:
    """An earlier row with the same dedup_key: stored (``ref`` is its id) or inserted earlier
    in this batch (``ref`` is its index among the batch's inserts)."""

    __slots__ = ("ack", "failed", "fingerprint", "received_at", "ref", "stored")

    def __init__(self, ref: int, stored: bool, received_at: float, ack, status: str,
                 ack_code: str | None, fingerprint) -> None:  # fmt: skip
        self.ref = ref
        self.stored = stored
        self.received_at = received_at
        self.ack = ack
        self.failed = status in FAILED_STATUSES or ack_code in NEGATIVE_ACKS
        self.fingerprint = None if fingerprint is None else bytes(fingerprint)


def from_row(index: int, row: dict) -> Candidate:
    """The candidate a row inserted in this batch makes for the rows after it."""
    return Candidate(index, False, row["received_at"], row.get("ack"), row["status"],
                     row.get("ack_code"), row.get("body_hash"))  # fmt: skip


def same_body(stored: bytes | None, incoming: bytes | None) -> bool:
    if stored is None or incoming is None or stored[:_TAG] != incoming[:_TAG]:
        return True  # cannot tell: taken for the same message
    return stored == incoming


def classify(candidates: list[Candidate], row: dict, window: float):
    """(NEW | DUPLICATE | CONFLICT | RETRY, the candidate it refers to or None).

    ``candidates`` are oldest first; the newest that fits wins."""
    earliest = row["received_at"] - window
    incoming = row.get("body_hash")
    accepted = failed = None
    for c in reversed(candidates):
        if c.received_at < earliest:
            continue
        if c.failed:
            failed = failed or c
        elif same_body(c.fingerprint, incoming):
            return DUPLICATE, c
        else:
            accepted = accepted or c
    if accepted is not None:
        return CONFLICT, accepted
    if failed is not None:
        return RETRY, failed
    return NEW, None
