"""The delivery queue in the store: claims, leases, outcomes and operator actions.

Blocking SQLAlchemy Core functions, run off the reactor thread. FIFO per destination (a
channel's named destination): the head is the open delivery with the lowest id, and nothing
behind it is sent before it is delivered, dead, skipped or replayed.

Several engine nodes may share one PostgreSQL store: a lease per destination (holder and
expiry in destination_state) keeps one node delivering a destination at a time, so order
holds; claims use SELECT ... FOR UPDATE SKIP LOCKED. When a lease is taken over, the rows
the dead holder had in flight go back to pending. A SQLite store has one node by design: its
lease lives in memory, taken once per process (the holder is recorded, with no expiry), and
an idle engine's polls only read, so the store (its write-ahead log) does not grow.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from engine.store.crypto import NULL_SEALER
from engine.store.schema import (
    DEAD,
    HELD,
    IN_FLIGHT,
    OPEN_PREDICATE,
    OPEN_STATES,
    PENDING,
    SKIPPED,
    deliveries,
    destination_state,
    messages,
)

d = deliveries.c
s = destination_state.c


@dataclass(frozen=True, slots=True)
class QueuedRow:
    id: int
    message_id: int
    status: str
    attempts: int
    next_attempt_at: float | None
    created_at: float
    payload: bytes
    content_type: str
    control_id: str


class QueueStore:
    def __init__(self, engine: Engine, node: str, sealer=NULL_SEALER):
        self.sealer = sealer  # engine.store.crypto: payloads are opened as they are claimed
        self.engine = engine
        self.node = node
        self.single_node = engine.dialect.name == "sqlite"
        self._held: set[tuple[str, str]] = set()  # SQLite: leases this process holds

    # destination state and leases ------------------------------------------------------
    def _ensure(self, conn, channel: str, destination: str) -> None:
        exists = conn.execute(
            select(s.channel).where(s.channel == channel, s.destination == destination)
        ).first()
        if exists is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(destination_state).values(
                        channel=channel, destination=destination, paused=0))  # fmt: skip
            except IntegrityError:
                pass  # another node made it first

    def lease(self, channel: str, destination: str, now: float, ttl: float) -> tuple[bool, bool]:
        """Take or renew the lease of a destination. Returns (holder, paused).

        A newly taken lease sends the rows other nodes left in flight back to pending."""
        if self.single_node:
            return self._single_node_lease(channel, destination, now)
        with self.engine.begin() as conn:
            self._ensure(conn, channel, destination)
            row = conn.execute(
                select(s.lease_holder, s.lease_until, s.paused).where(
                    s.channel == channel, s.destination == destination
                )
            ).one()
            mine = row.lease_holder == self.node
            free = row.lease_holder is None or (row.lease_until or 0) < now
            if not (mine or free):
                return False, bool(row.paused)
            take = (  # only if still free or ours (another node may race us)
                update(destination_state)
                .where(s.channel == channel, s.destination == destination)
                .where(
                    or_(s.lease_holder == self.node, s.lease_holder.is_(None), s.lease_until < now)
                )
            )
            taken = conn.execute(
                take.values(lease_holder=self.node, lease_until=now + ttl, updated_at=now)
            ).rowcount
            if not taken:
                return False, bool(row.paused)
            if not mine:
                self._requeue_in_flight(conn, channel, destination, now)
            return True, bool(row.paused)

    def _single_node_lease(self, channel: str, destination: str, now: float):
        """SQLite: one node, so the lease is this process's once taken; renewing it would
        only write (a WAL frame or two every second) what nobody else reads."""
        where = (s.channel == channel, s.destination == destination)
        if (channel, destination) in self._held:
            with self.engine.connect() as conn:
                return True, bool(conn.execute(select(s.paused).where(*where)).scalar())
        with self.engine.begin() as conn:
            self._ensure(conn, channel, destination)
            paused = conn.execute(select(s.paused).where(*where)).scalar()
            conn.execute(
                update(destination_state)
                .where(*where)
                .values(lease_holder=self.node, lease_until=None, updated_at=now)
            )
            self._requeue_in_flight(conn, channel, destination, now)
        self._held.add((channel, destination))
        return True, bool(paused)

    def _requeue_in_flight(self, conn, channel: str, destination: str, now: float) -> None:
        """A lease newly taken: rows an earlier holder had in flight go back to pending."""
        conn.execute(
            update(deliveries)
            .where(d.channel == channel, d.destination == destination)
            .where(d.status == IN_FLIGHT)
            .values(status=PENDING, claimed_by=None, updated_at=now)
        )

    def release(self, channel: str, destination: str) -> None:
        self._held.discard((channel, destination))
        with self.engine.begin() as conn:
            conn.execute(
                update(destination_state)
                .where(s.channel == channel, s.destination == destination)
                .where(s.lease_holder == self.node)
                .values(lease_holder=None, lease_until=None)
            )

    # claims ---------------------------------------------------------------------------
    def claim(self, channel: str, destination: str, limit: int, now: float) -> list[QueuedRow]:
        """The head of the queue, in order: up to ``limit`` open rows.

        On PostgreSQL they are locked (FOR UPDATE SKIP LOCKED) and marked in flight with this
        node's id. A SQLite store has one node and one writer: claiming is a plain read (a
        write here would be one more fsync competing with intake's group commits), and a
        restart resends every row not delivered, which is what in flight means anyway.
        """
        q = (
            select(
                d.id, d.message_id, d.status, d.attempts, d.next_attempt_at, d.created_at,
                d.payload, d.content_type, messages.c.control_id,
            )
            .select_from(deliveries.join(messages, messages.c.id == d.message_id, isouter=True))
            .where(d.channel == channel, d.destination == destination)
            .where(text("deliveries." + OPEN_PREDICATE))  # literal: the partial index serves it
            .order_by(d.id)
            .limit(limit)
        )  # fmt: skip
        if self.single_node:
            with self.engine.connect() as conn:
                rows = conn.execute(q).all()
        else:
            with self.engine.begin() as conn:
                rows = conn.execute(q.with_for_update(of=deliveries, skip_locked=True)).all()
                fresh = [r.id for r in rows if r.status == PENDING]
                if fresh:
                    conn.execute(
                        update(deliveries)
                        .where(d.id.in_(fresh))
                        .values(status=IN_FLIGHT, claimed_by=self.node, updated_at=now)
                    )
        return [
            QueuedRow(r.id, r.message_id, IN_FLIGHT if r.status == PENDING else r.status,
                      r.attempts, r.next_attempt_at, r.created_at, self.sealer.open(r.payload),
                      r.content_type,
                      r.control_id or "")
            for r in rows
        ]  # fmt: skip

    # operator actions -----------------------------------------------------------------
    def set_paused(self, channel: str, destination: str, paused: bool) -> None:
        with self.engine.begin() as conn:
            self._ensure(conn, channel, destination)
            conn.execute(
                update(destination_state)
                .where(s.channel == channel, s.destination == destination)
                .values(paused=1 if paused else 0)
            )

    def replay(self, *, ids=None, channel=None, destination=None, status=DEAD,
               now: float) -> int:  # fmt: skip
        """Dead (or held, or skipped) deliveries back to pending, keeping their place."""
        conds = [d.status.in_((DEAD, HELD, SKIPPED) if status == "any" else (status,))]
        if ids:
            conds.append(d.id.in_(list(ids)))
        if channel:
            conds.append(d.channel == channel)
        if destination:
            conds.append(d.destination == destination)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(deliveries)
                .where(and_(*conds))
                .values(
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=None,
                    claimed_by=None,
                    updated_at=now,
                )
            )
            return result.rowcount

    def skip_head(self, channel: str, destination: str, now: float) -> int | None:
        """Mark the head of a queue skipped (operator decision). Returns its id."""
        with self.engine.begin() as conn:
            head = conn.execute(
                select(d.id)
                .where(d.channel == channel, d.destination == destination)
                .where(d.status.in_(OPEN_STATES))
                .order_by(d.id)
                .limit(1)
            ).scalar()
            if head is None:
                return None
            conn.execute(
                update(deliveries)
                .where(d.id == head)
                .values(
                    status=SKIPPED,
                    claimed_by=None,
                    updated_at=now,
                    last_error="skipped by an operator",
                )
            )
            return head

    def depths(self, now: float) -> list[dict]:
        """Per destination: open rows by state and the age of the oldest."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.channel, d.destination, d.status, func.count(), func.min(d.created_at))
                .where(d.status.in_((*OPEN_STATES, DEAD)))
                .group_by(d.channel, d.destination, d.status)
            ).all()
            states = conn.execute(select(s.channel, s.destination, s.paused, s.lease_holder)).all()
        out: dict[tuple[str, str], dict] = {}
        for ch, dest, status, count, oldest in rows:
            e = out.setdefault((ch, dest), {"channel": ch, "destination": dest, "oldest_age": 0.0,
                                            "paused": False, "holder": None})  # fmt: skip
            e[status] = count
            if status in OPEN_STATES and oldest is not None:
                e["oldest_age"] = max(e["oldest_age"], now - oldest)
        for ch, dest, paused, holder in states:
            e = out.setdefault((ch, dest), {"channel": ch, "destination": dest, "oldest_age": 0.0,
                                            "paused": False, "holder": None})  # fmt: skip
            e["paused"], e["holder"] = bool(paused), holder
        return sorted(out.values(), key=lambda e: (e["channel"], e["destination"]))

    def head(self, channel: str, destination: str, limit: int = 20) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.id, d.message_id, d.status, d.attempts, d.next_attempt_at, d.created_at,
                       d.last_error, d.response_code)
                .where(d.channel == channel, d.destination == destination)
                .where(d.status.in_((*OPEN_STATES, DEAD)))
                .order_by(d.id)
                .limit(limit)
            ).all()  # fmt: skip
        return [dict(r._mapping) for r in rows]


# outcome statements, executed by the store writer in its group commit ----------------
def outcome_update():
    """One UPDATE for every outcome (executemany-friendly): the values come as parameters."""
    return (
        update(deliveries)
        .where(d.id == bindparam("did"))
        .values(
            status=bindparam("status"),
            attempts=bindparam("attempts"),
            next_attempt_at=bindparam("next_at"),
            last_error=bindparam("error"),
            response_code=bindparam("code"),
            response=bindparam("response"),
            claimed_by=None,
            updated_at=bindparam("now"),
            delivered_at=bindparam("delivered_at"),
        )
    )


OUTCOME_UPDATE = outcome_update()
