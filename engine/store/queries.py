"""Read queries over the store (CLI, later the admin API). Never on the writer's connection."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.store.schema import messages

LIST_COLUMNS = (
    "id",
    "received_at",
    "listener",
    "peer",
    "control_id",
    "message_type",
    "trigger",
    "version",
    "sending_application",
    "sending_facility",
    "status",
    "reason",
    "routes",
    "ack_code",
    "duplicates",
    "size",
)


@dataclass
class MessageFilter:
    control_id: str | None = None
    message_type: str | None = None  # "ADT" or "ADT^A01"
    status: str | None = None
    listener: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 50


def list_messages(engine: Engine, f: MessageFilter) -> list[dict]:
    m = messages.c
    q = select(*(getattr(m, c) for c in LIST_COLUMNS))
    if f.control_id:
        q = q.where(m.control_id == f.control_id)
    if f.message_type:
        typ, _, trig = f.message_type.partition("^")
        q = q.where(m.message_type == typ)
        if trig:
            q = q.where(m.trigger == trig)
    if f.status:
        q = q.where(m.status == f.status)
    if f.listener:
        q = q.where(m.listener == f.listener)
    if f.since is not None:
        q = q.where(m.received_at >= f.since)
    if f.until is not None:
        q = q.where(m.received_at < f.until)
    q = q.order_by(m.id.desc()).limit(f.limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def get_message(engine: Engine, message_id: int) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    return dict(row._mapping) if row else None
