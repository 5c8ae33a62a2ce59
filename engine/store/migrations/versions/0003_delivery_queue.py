"""delivery queue states and per-destination state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN_PREDICATE = "status IN ('pending', 'in_flight', 'retry', 'held')"


def new_columns() -> list[sa.Column]:
    return [
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("response_code", sa.String(16)),
        sa.Column("response", sa.Text),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("updated_at", sa.Float),
        sa.Column("delivered_at", sa.Float),
    ]


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for column in new_columns():
            batch.add_column(column)
    op.create_index("ix_deliveries_status", "deliveries", ["status", "channel", "destination"])
    # the head of each queue: open rows only (see schema.OPEN_PREDICATE)
    op.drop_index("ix_deliveries_queue", "deliveries")
    op.create_index(
        "ix_deliveries_open",
        "deliveries",
        ["channel", "destination", "id"],
        sqlite_where=sa.text(OPEN_PREDICATE),
        postgresql_where=sa.text(OPEN_PREDICATE),
    )
    op.create_table(
        "destination_state",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("destination", sa.String(64), primary_key=True),
        sa.Column("paused", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_holder", sa.String(128)),
        sa.Column("lease_until", sa.Float),
        sa.Column("updated_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("destination_state")
    op.drop_index("ix_deliveries_open", "deliveries")
    op.create_index("ix_deliveries_queue", "deliveries", ["channel", "destination", "status", "id"])
    op.drop_index("ix_deliveries_status", "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        for column in reversed(new_columns()):
            batch.drop_column(column.name)
