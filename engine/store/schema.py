"""Tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them; a test checks
that the migrated schema and this metadata agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an alias of its rowid; BIGINT elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Message status values.
RECEIVED = "received"  # durable, not routed yet
ROUTED = "routed"  # matched at least one route
UNROUTED = "unrouted"  # matched no route
REJECTED = "rejected"  # not acceptable (no usable MSH, AR); the reason says why
FILTERED = "filtered"  # every channel it was routed to filtered it out
ERRORED = "errored"  # a channel step failed; channel_runs says where and why
STATUSES = (RECEIVED, ROUTED, UNROUTED, FILTERED, ERRORED, REJECTED)

messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),  # Unix time, seconds
    Column("listener", String(64), nullable=False),
    Column("peer", String(128), nullable=False, server_default=""),
    Column("peer_cert", String(512)),  # verified TLS client certificate subject
    Column("control_id", String(199), nullable=False, server_default=""),
    Column("message_type", String(16), nullable=False, server_default=""),
    Column("trigger", String(16), nullable=False, server_default=""),
    Column("version", String(16), nullable=False, server_default=""),
    Column("processing_id", String(8), nullable=False, server_default=""),
    Column("sending_application", String(227), nullable=False, server_default=""),
    Column("sending_facility", String(227), nullable=False, server_default=""),
    Column("dedup_key", String(700)),  # sending app, facility and control id; NULL = no dedup
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("routes", Text),  # channel names, comma separated
    Column("charset", String(32), nullable=False, server_default=""),
    Column("size", Integer, nullable=False),
    Column("ack_code", String(2)),
    Column("ack", LargeBinary),  # the ACK as sent (unframed), replayed for duplicates
    Column("duplicates", Integer, nullable=False, server_default="0"),
    Column("source_file", Integer),  # files.id for messages from a file drop
    Column("raw", LargeBinary, nullable=False),  # the payload as received
    Column("patient_id", String(64)),  # PID-3.1 of the first repetition, for search
    # what duplicate detection compares: 2-byte key tag + BLAKE2b-128, keyed with encryption
    # at rest (engine.store.crypto); NULL: not computed (duplicate detection off, or older)
    Column("body_hash", LargeBinary),
    Column("reprocess_of", BigInteger),  # the errored/rejected message this one retries
    Column("conflicts_with", BigInteger),  # the first message with its MSH-10, another body
    Index("ix_messages_received_at", "received_at"),
    Index("ix_messages_patient", "patient_id", "received_at"),
    # also the duplicate check's index: it looks candidates up by control id and compares
    # dedup_key on the row (a second index on dedup_key cost the writer 6 µs of CPU and
    # 4.7 KB of WAL per message: migration 0005)
    Index("ix_messages_control_id", "control_id"),
    Index("ix_messages_type", "message_type", "trigger", "received_at"),
    Index("ix_messages_type_time", "message_type", "received_at"),
    Index("ix_messages_status", "status", "received_at"),
    # "reprocessed as" of a message; a partial index: most rows have no link (migration 0006)
    Index(
        "ix_messages_reprocess_of",
        "reprocess_of",
        sqlite_where=text("reprocess_of IS NOT NULL"),
        postgresql_where=text("reprocess_of IS NOT NULL"),
    ),
)

files = Table(
    "files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("listener", String(64), nullable=False),
    Column("name", String(512), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("processed_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # done | error
    Column("messages", Integer, nullable=False),
    Column("reason", Text),
    Index("ix_files_claim", "listener", "name", "sha256", unique=True),
)

channel_runs = Table(
    "channel_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # passed | filtered | errored
    Column("step", Integer),  # where it was filtered or failed (1-based)
    Column("step_kind", String(128)),
    Column("reason", Text),
    Column("flags", String(512)),
    Column("created_at", Float, nullable=False),
    Index("ix_channel_runs_message", "message_id"),
    Index("ix_channel_runs_channel_status", "channel", "status"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # see DELIVERY_STATES
    Column("content_type", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float),  # for status retry
    Column("last_error", Text),
    Column("response_code", String(16)),  # MSA-1 or HTTP status of the last attempt
    Column("response", Text),  # the peer's reply (ACK text, HTTP body excerpt)
    Column("claimed_by", String(128)),  # node holding it in flight
    Column("updated_at", Float),
    Column("delivered_at", Float),
    Index("ix_deliveries_message", "message_id"),
    Index("ix_deliveries_status", "status", "channel", "destination"),
)

# Delivery states: a row moves pending -> in_flight -> delivered, or -> retry (with
# next_attempt_at) and back, or -> dead (dead letter; replayable) / held (on_failure: block,
# the queue waits for an operator) / skipped (an operator skipped the head).
PENDING, IN_FLIGHT, DELIVERED = "pending", "in_flight", "delivered"
RETRYING, DEAD, HELD, SKIPPED = "retry", "dead", "held", "skipped"
DELIVERY_STATES = (PENDING, IN_FLIGHT, DELIVERED, RETRYING, DEAD, HELD, SKIPPED)
OPEN_STATES = (PENDING, IN_FLIGHT, RETRYING, HELD)  # still in the queue
# The queue's head: a partial index over open rows only, so finding the head costs the same
# with a million delivered rows behind it. Queries must repeat this predicate literally
# (SQLite uses a partial index only when the query's WHERE contains the same term).
OPEN_PREDICATE = "status IN ('pending', 'in_flight', 'retry', 'held')"
Index(
    "ix_deliveries_open",
    deliveries.c.channel,
    deliveries.c.destination,
    deliveries.c.id,
    sqlite_where=text(OPEN_PREDICATE),
    postgresql_where=text(OPEN_PREDICATE),
)

destination_state = Table(
    "destination_state",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("destination", String(64), primary_key=True),
    Column("paused", Integer, nullable=False, server_default="0"),
    Column("lease_holder", String(128)),  # the node delivering this destination
    Column("lease_until", Float),
    Column("updated_at", Float),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),  # token name, client certificate, "cli"
    Column("action", String(64), nullable=False),  # replay, skip, pause, resume, reload...
    Column("target", String(256)),  # e.g. lab-results/epic, message 42
    Column("detail", Text),  # parameters and outcome (ids and codes, never message content)
    Column("source", String(128)),  # peer address
    Index("ix_audit_at", "at"),
)
