"""The store's part of routes.yaml: the store URL and store_options (group commits,
checkpoints, leases, retention, storage modes, encryption at rest)."""

from __future__ import annotations

import re
from typing import Any

from yaml.nodes import Node, ScalarNode

from .fieldtypes import Bool, Duration, Enum, Int, ListOf, String, StrOrList, resolve_path
from .spec import Field, Nested, Spec
from .validation import At, Ctx, FieldType, is_null


class StoreUrl(FieldType):
    """A SQLAlchemy URL for sqlite or postgresql; a relative sqlite path starts at the
    config file's directory (`sqlite:///var/x.db` -> `sqlite:////srv/var/x.db`)."""

    name = "database URL"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        url = node.value
        scheme, sep, rest = url.partition("://")
        dialect = scheme.split("+", 1)[0]
        if not sep or dialect not in ("sqlite", "postgresql"):
            return ctx.error(
                node,
                f"unsupported store '{mask_password(url)}' for {at.key}: "
                "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            )
        if dialect == "postgresql":
            return url
        if rest and not rest.startswith("/"):
            return ctx.error(node, f"invalid store '{url}' for {at.key}: write sqlite:///PATH")
        path, query_sep, query = rest[1:].partition("?")
        if not path or path == ":memory:" or path.startswith("/") or path.startswith("file:"):
            return url
        return f"{scheme}:///{resolve_path(path, ctx.base_dir)}{query_sep}{query}"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^(sqlite|postgresql)(\\+[a-z0-9_]+)?://"}

    def doc(self) -> str:
        return "SQLAlchemy URL (sqlite:///PATH or postgresql+psycopg://...)"


_PASSWORD = re.compile(r"^([A-Za-z0-9+.-]+://[^:/@]*:)[^@/]*@")


def mask_password(url: str) -> str:
    """`postgresql://u:secret@h/db` -> `postgresql://u:***@h/db`."""
    return _PASSWORD.sub(r"\1***@", url)


STORAGE_MODES = ("everything", "raw_and_final", "metadata_only")
_MESSAGE_STATUSES = ("received", "routed", "unrouted", "filtered", "errored", "rejected")


class EncryptionKeys(FieldType):
    """Key id -> a key: base64 of 32 bytes (write "${VAR}" to read it from the environment),
    {env: VAR} or {file: PATH}."""

    name = "mapping of key id to key"

    def check(self, node, ctx, at):
        from yaml.nodes import MappingNode, ScalarNode

        from .scalars import scalar_value

        if not isinstance(node, MappingNode) or not node.value:
            return self.wrong_type(node, ctx, at, " (like {key-2026: ${SB_KEY_2026}})")
        out = {}
        for key, value in node.value:
            ctx.record((*at.path, key.value), value)
            if isinstance(value, ScalarNode):
                out[key.value] = str(scalar_value(value))
            elif isinstance(value, MappingNode):
                pairs = {k.value: v.value for k, v in value.value if isinstance(v, ScalarNode)}
                if set(pairs) not in ({"env"}, {"file"}):
                    ctx.error(value, f"key '{key.value}' takes base64 text, {{env: VAR}} or "
                              "{file: PATH}")  # fmt: skip
                    continue
                out[key.value] = pairs
            else:
                ctx.error(value, f"key '{key.value}' takes base64 text, {{env: VAR}} or "
                          "{file: PATH}")  # fmt: skip
        return out

    def json_schema(self):
        key = {"oneOf": [{"type": "string"},
                         {"type": "object", "properties": {"env": {"type": "string"}},
                          "required": ["env"], "additionalProperties": False},
                         {"type": "object", "properties": {"file": {"type": "string"}},
                          "required": ["file"], "additionalProperties": False}]}  # fmt: skip
        return {"type": "object", "minProperties": 1, "additionalProperties": key}


ENCRYPTION = Spec(
    "encryption",
    "AES-256-GCM for message bodies, ACKs and delivery payloads; the key id is stored with "
    "each value, so keys rotate: new writes use `current`, older keys stay listed until "
    "`switchboard`'s rotate has re-sealed their rows.",
    (
        Field("enabled", Bool(), "Off keeps the keys but stores plaintext.", default=True),
        Field("current", String(), "The key id new writes use.", required=True,
              example="key-2026"),
        Field("keys", EncryptionKeys(), "Key ids and their keys.", required=True,
              example={"key-2026": "${SB_KEY_2026}"}),
    ),
)  # fmt: skip


RETENTION_RULE = Spec(
    "retention rule",
    "Keep messages in these statuses for a shorter (or longer) time.",
    (
        Field("status", StrOrList(Enum(*_MESSAGE_STATUSES), min_items=1), "Message statuses.",
              required=True, example=["rejected", "filtered"]),
        Field("max_age", Duration(), "How long they are kept.", required=True, example="30d"),
    ),
)  # fmt: skip

RETENTION = Spec(
    "retention",
    "Pruning by age and status, in small batches (no long locks); a message with a delivery "
    "still to make is never pruned.",
    (
        Field("max_age", Duration(), "Messages older than this are deleted with their history "
              "(null: keep forever).", nullable=True, example="90d"),
        Field("rules", ListOf(Nested(RETENTION_RULE)), "Other ages for some statuses.",
              default=[]),
        Field("compact_after", Duration(), "When the storage mode drops delivered payloads or "
              "raw messages, how long after delivery.", default="1h"),
        Field("interval", Duration(min=1.0), "How often the pass runs.", default="10m"),
        Field("batch_size", Int(min=1, max=10000), "Rows per short transaction.", default=500),
        Field("max_batches", Int(min=1), "Batches per step and pass at most.", default=100),
        Field("pause", Duration(), "Pause between batches, for other writers.", default="10ms"),
    ),
)  # fmt: skip

STORE_OPTIONS = Spec(
    "store_options",
    "Tuning of the message store.",
    (
        Field(
            "synchronous",
            Enum("off", "normal", "full", "extra"),
            "SQLite synchronous pragma (full: an ACKed message survives a power cut).",
            default="full",
        ),
        Field(
            "max_batch",
            Int(min=1, max=100000),
            "Most writes committed in one transaction.",
            default=2000,
        ),
        Field(
            "inline_commit",
            Bool(),
            "SQLite: when a small batch (up to 32 messages) is all there is in flight, commit "
            "it on the event loop instead of handing it to the writer thread: lower latency "
            "and CPU at light load and for senders that wait for each ACK. Under load writes "
            "go to the writer's group commits.",
            default=True,
        ),
        Field(
            "gather_time",
            Duration(max=0.1),
            "Most time a group commit waits for the senders its last commits answered to "
            "send their next message, so that they share one commit (senders that wait for "
            "each ACK). It never waits for a lone sender or while the writer is busy; 0 "
            "never waits.",
            default="2ms",
        ),
        Field(
            "checkpoint_rows",
            Int(min=0),
            "SQLite: copy the write-ahead log back into the database on a thread of its own "
            "after this many rows, so group commits do not wait for it (0: SQLite's own "
            "checkpoints, inside the commit that takes the log past 1,000 pages).",
            default=300,
        ),
        Field("pool_size", Int(min=1), "Database connections (PostgreSQL).", default=5),
        Field(
            "lease_ttl",
            Duration(min=1.0),
            "How long a node holds a destination without renewing (several nodes on "
            "PostgreSQL): when a node dies, another takes its destinations over after this.",
            default="15s",
        ),
        Field(
            "poll_interval",
            Duration(min=0.01),
            "How often idle delivery workers look for work from other nodes and operators.",
            default="1s",
        ),
        Field(
            "stop_timeout",
            Duration(),
            "On shutdown, how long a delivery worker waits for the answer to its send in "
            "flight (an ACK, an HTTP response) before leaving it to be sent again after the "
            "restart. Outcomes already answered are always recorded.",
            default="10s",
        ),
        Field(
            "storage",
            Enum(*STORAGE_MODES),
            "What is kept of each message: everything; the raw message and final outputs (a "
            "delivered payload is emptied); or metadata only (the raw message is emptied once "
            "delivered). A channel may set its own.",
            default="everything",
        ),
        Field("retention", Nested(RETENTION), "Pruning by age and status.", default={}),
        Field(
            "encryption",
            Nested(ENCRYPTION),
            "Message bodies and delivery payloads encrypted at rest (AES-256-GCM).",
            nullable=True,
        ),
    ),
)
