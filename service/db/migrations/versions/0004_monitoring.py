"""Monitoring: feedback, drift references and drift checks.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column(
            "prediction_id", sa.String(36), sa.ForeignKey("prediction_log.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("predicted", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_feedback_model_received_at", "feedback", ["model", "received_at"])
    op.create_table(
        "drift_reference",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.JSON, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("projection", sa.JSON),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model", "version", name="uq_drift_reference_model_version"),
    )
    op.create_table(
        "drift_check",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("reference_id", sa.Integer, sa.ForeignKey("drift_reference.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tick", sa.DateTime(timezone=True)),
        sa.Column("window_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("report", sa.LargeBinary),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("model", "tick", name="uq_drift_check_model_tick"),
    )
    op.create_index("ix_drift_check_model_status", "drift_check", ["model", "status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_check_model_status", table_name="drift_check")
    op.drop_table("drift_check")
    op.drop_table("drift_reference")
    op.drop_index("ix_feedback_model_received_at", table_name="feedback")
    op.drop_table("feedback")
