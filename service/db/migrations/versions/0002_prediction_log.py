"""Prediction log.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("score", sa.Float),
        sa.Column("output", sa.JSON),
        sa.Column("input_text", sa.Text),
    )
    op.create_index("ix_prediction_log_model_created_at", "prediction_log", ["model", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_prediction_log_model_created_at", table_name="prediction_log")
    op.drop_table("prediction_log")
