"""messages and files

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("listener", sa.String(64), nullable=False),
        sa.Column("peer", sa.String(128), nullable=False, server_default=""),
        sa.Column("peer_cert", sa.String(512)),
        sa.Column("control_id", sa.String(199), nullable=False, server_default=""),
        sa.Column("message_type", sa.String(16), nullable=False, server_default=""),
        sa.Column("trigger", sa.String(16), nullable=False, server_default=""),
        sa.Column("version", sa.String(16), nullable=False, server_default=""),
        sa.Column("processing_id", sa.String(8), nullable=False, server_default=""),
        sa.Column("sending_application", sa.String(227), nullable=False, server_default=""),
        sa.Column("sending_facility", sa.String(227), nullable=False, server_default=""),
        sa.Column("dedup_key", sa.String(700)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("routes", sa.Text),
        sa.Column("charset", sa.String(32), nullable=False, server_default=""),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("ack_code", sa.String(2)),
        sa.Column("ack", sa.LargeBinary),
        sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"),
        sa.Column("source_file", sa.Integer),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.create_index("ix_messages_control_id", "messages", ["control_id"])
    op.create_index("ix_messages_type", "messages", ["message_type", "trigger"])
    op.create_index("ix_messages_status", "messages", ["status"])
    op.create_index("ix_messages_dedup", "messages", ["dedup_key"])
    op.create_table(
        "files",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("listener", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("processed_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("messages", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_files_claim", "files", ["listener", "name", "sha256"], unique=True)


def downgrade() -> None:
    op.drop_table("files")
    op.drop_table("messages")
