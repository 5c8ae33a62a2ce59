"""patient id search column and the audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(64)))
    op.create_index("ix_messages_patient", "messages", ["patient_id", "received_at"])
    # searches by type or status, newest first, straight from the index
    op.drop_index("ix_messages_type", "messages")
    op.create_index("ix_messages_type", "messages", ["message_type", "trigger", "received_at"])
    op.create_index("ix_messages_type_time", "messages", ["message_type", "received_at"])
    op.drop_index("ix_messages_status", "messages")
    op.create_index("ix_messages_status", "messages", ["status", "received_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("detail", sa.Text),
        sa.Column("source", sa.String(128)),
    )
    op.create_index("ix_audit_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_messages_patient", "messages")
    op.drop_index("ix_messages_status", "messages")
    op.create_index("ix_messages_status", "messages", ["status"])
    op.drop_index("ix_messages_type_time", "messages")
    op.drop_index("ix_messages_type", "messages")
    op.create_index("ix_messages_type", "messages", ["message_type", "trigger"])
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("patient_id")
