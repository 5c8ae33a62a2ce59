"""links between messages with the same MSH-10 from the same sender, and a body fingerprint

``reprocess_of``: the errored or rejected message this one was taken in again for (the
sender's retry, an operator's replay), under a partial index so "reprocessed as" is a lookup.
``conflicts_with``: the message that came first with the same MSH-10 and sender but another
body. ``body_hash``: the fingerprint duplicate detection compares (a key tag and a keyed
BLAKE2b digest when encryption at rest is on, engine.store.crypto).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LINKED = "reprocess_of IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("body_hash", sa.LargeBinary))
        batch.add_column(sa.Column("reprocess_of", sa.BigInteger))
        batch.add_column(sa.Column("conflicts_with", sa.BigInteger))
    op.create_index(
        "ix_messages_reprocess_of",
        "messages",
        ["reprocess_of"],
        sqlite_where=sa.text(LINKED),
        postgresql_where=sa.text(LINKED),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_reprocess_of", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("conflicts_with")
        batch.drop_column("reprocess_of")
        batch.drop_column("body_hash")
