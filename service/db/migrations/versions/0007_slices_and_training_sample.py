"""Trust between labels: a group per test record (slices) and a kept sample of labelled training records.

Revision ID: 0007
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("test_record") as batch:
        batch.add_column(sa.Column("group", sa.String(200), nullable=True))
    op.create_table(
        "training_record",
        sa.Column(
            "test_set_id", sa.Integer, sa.ForeignKey("test_set.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("target", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("training_record")
    with op.batch_alter_table("test_record") as batch:
        batch.drop_column("group")
