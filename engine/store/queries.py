"""Read queries over the store (CLI, later the admin API). Never on the writer's connection."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.store.crypto import NULL_SEALER
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


def get_message(engine: Engine, message_id: int, sealer=None) -> dict | None:
    """One message row; raw and ack opened with ``sealer`` (engine.store.crypto), and
    ``reprocessed_as``: the messages taken in again for it (see :func:`reprocessed_as`)."""
    with engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["reprocessed_as"] = reprocessed_as(conn, message_id)
    sealer = sealer or NULL_SEALER
    out["raw"], out["ack"] = sealer.open(out["raw"]), sealer.open(out["ack"])
    return out


def reprocessed_as(conn, message_id: int) -> list[int]:
    """Ids of the messages stored as retries or replays of this one (ix_messages_reprocess_of),
    oldest first."""
    m = messages.c
    query = select(m.id).where(m.reprocess_of == message_id).order_by(m.id)
    return list(conn.execute(query).scalars())
