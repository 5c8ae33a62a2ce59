"""The audit log of operator actions (admin API, CLI). Blocking: run off the reactor thread.

An entry says who (actor), what (action), on what (target), with which parameters and
outcome (detail: ids and codes, never message content) and from where (source).
"""

from __future__ import annotations

import contextlib
import json
import time

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from engine.store.schema import audit_log

a = audit_log.c


def _clip(value, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def record(engine: Engine, actor: str, action: str, target: str | None, detail=None,
           source: str | None = None) -> int:  # fmt: skip
    """Insert one entry; ``detail`` may be a dict (stored as JSON). Returns its id."""
    if detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, sort_keys=True, default=str)
    with engine.begin() as conn:
        result = conn.execute(
            insert(audit_log).values(
                at=time.time(),
                actor=_clip(actor, 128) or "anonymous",
                action=_clip(action, 64),
                target=_clip(target, 256),
                detail=detail,
                source=_clip(source, 128),
            )
        )
        return result.inserted_primary_key[0]


def recent(engine: Engine, limit: int = 100) -> list[dict]:
    """The newest entries first."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(a.id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        e = dict(r._mapping)
        with contextlib.suppress(ValueError):
            e["detail"] = json.loads(e["detail"]) if e["detail"] else e["detail"]
        out.append(e)
    return out
