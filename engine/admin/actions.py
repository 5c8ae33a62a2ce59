"""Operator actions on the delivery queues (pause, resume, skip, replay), each with its audit
entry: one implementation for both paths. The admin API runs them off the reactor thread and
then wakes the workers concerned; ``switchboard queue ...`` and ``switchboard replay`` run them
directly when no engine runs. Blocking.

The entry (action, target, detail) is the same whichever path took the action; only who
(actor) and from where (source) differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from engine.admin import audit, search
from engine.delivery.queue import QueueStore
from engine.store.schema import DEAD, ERRORED, FILTERED, HELD, REJECTED, SKIPPED, UNROUTED

REPLAY_STATUSES = (DEAD, HELD, SKIPPED, "any")
# A replay takes these in again (they went nowhere); others have their deliveries replayed.
REPROCESS_STATUSES = (ERRORED, REJECTED, UNROUTED, FILTERED)


@dataclass(frozen=True)
class Operator:
    """Who acts, for the audit log: ``actor`` (token, cert:CN, cli:USER) and ``source`` (the
    client's address, or cli)."""

    actor: str
    source: str | None


def record(store: Engine, who: Operator, action: str, target: str, detail=None) -> int:
    """The audit entry of an operator action: the one way the API and the CLI write one."""
    return audit.record(store, who.actor, action, target, detail, who.source)


def set_paused(queue: QueueStore, who: Operator, channel: str, destination: str,
               paused: bool) -> dict:  # fmt: skip
    queue.set_paused(channel, destination, paused)
    record(queue.engine, who, "pause" if paused else "resume", f"{channel}/{destination}",
           {"paused": paused})  # fmt: skip
    return {"channel": channel, "destination": destination, "paused": paused}


def empty_queue(channel: str, destination: str) -> str:
    return f"{channel}/{destination}: the queue is empty"


def skip(queue: QueueStore, who: Operator, channel: str, destination: str,
         now: float) -> int | None:  # fmt: skip
    """Skip the head of a queue: its delivery id, or None when nothing is open (no entry)."""
    skipped = queue.skip_head(channel, destination, now)
    if skipped is not None:
        record(queue.engine, who, "skip", f"{channel}/{destination}", {"delivery": skipped})
    return skipped


def replay(queue: QueueStore, who: Operator, *, now: float, ids: list[int] | None = None,
           channel: str | None = None, destination: str | None = None,
           status: str = DEAD) -> int:  # fmt: skip
    """Deliveries (by id, of a destination or channel, or every one) in ``status`` back in
    their queues, in their place. Returns how many."""
    count = queue.replay(ids=ids, channel=channel, destination=destination, status=status,
                         now=now)  # fmt: skip
    if ids:
        target = f"deliveries {','.join(map(str, ids[:20]))}" + ("..." if len(ids) > 20 else "")
    elif channel:
        target = f"{channel}/{destination}" if destination else channel
    else:
        target = "all"
    detail = {"status": status, "replayed": count}
    if ids:
        detail["ids"] = ids
    record(queue.engine, who, "replay", target, detail)
    return count


def replay_deliveries_of(queue: QueueStore, who: Operator, message_id: int,
                         now: float) -> dict | None:  # fmt: skip
    """A routed message's dead, held and skipped deliveries back in their queues; None when
    there is no such message."""
    ids = search.replayable_deliveries(queue.engine, message_id)
    if ids is None:
        return None
    count = queue.replay(ids=ids, status="any", now=now) if ids else 0
    detail = {"deliveries": ids, "replayed": count}
    record(queue.engine, who, "replay", f"message {message_id}", detail)
    return {"message_id": message_id, "replayed": count, "deliveries": ids}
