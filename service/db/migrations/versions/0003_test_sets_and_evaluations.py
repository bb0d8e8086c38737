"""Blind test sets, scoring submissions, evaluation jobs and their shards.

Revision ID: 0003
Revises: 0002
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = True) -> "sa.Column[datetime]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "test_set",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("n_bytes", sa.BigInteger, nullable=False),
        sa.Column("labels", sa.JSON),
        sa.Column("multilabel", sa.Boolean, nullable=False),
        sa.Column("audit", sa.JSON),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("deleted_at"),
        sa.UniqueConstraint("name", "version", name="uq_test_set_name_version"),
    )
    op.create_table(
        "test_record",
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_set.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("target", sa.JSON, nullable=False),
        sa.Column("exact_fp", sa.String(32), nullable=False),
        sa.Column("norm_fp", sa.String(64), nullable=False),
        sa.Column("target_fp", sa.String(32), nullable=False),
    )
    op.create_index("ix_test_record_set_record_id", "test_record", ["test_set_id", "record_id"])
    op.create_table(
        "scoring_state",
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_set.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("best_score", sa.Float),
        sa.Column("best_report", sa.JSON),
        sa.Column("best_predictions", sa.LargeBinary),
        _timestamp("updated_at", nullable=False),
    )
    op.create_table(
        "scoring_submission",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_set.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reported_score", sa.Float),
    )
    op.create_index("ix_scoring_submission_budget", "scoring_submission", ["test_set_id", "key_id", "created_at"])
    op.create_table(
        "evaluation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_set.id"), nullable=False),
        sa.Column("test_set_name", sa.String(100), nullable=False),
        sa.Column("test_set_version", sa.Integer, nullable=False),
        sa.Column("test_set_sha256", sa.String(64), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("extra_metrics", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("created_by", sa.String(64), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        sa.Column("lease_owner", sa.String(64)),
        _timestamp("lease_expires_at"),
    )
    op.create_index("ix_evaluation_status", "evaluation", ["status"])
    op.create_index("ix_evaluation_test_set", "evaluation", ["test_set_id"])
    op.create_table(
        "evaluation_shard",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("evaluation_id", sa.Integer, sa.ForeignKey("evaluation.id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("start", sa.Integer, nullable=False),
        sa.Column("stop", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        _timestamp("lease_expires_at"),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("output", sa.JSON),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("evaluation_id", "idx", name="uq_evaluation_shard_idx"),
    )
    op.create_index("ix_evaluation_shard_status", "evaluation_shard", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_table("evaluation_shard")
    op.drop_table("evaluation")
    op.drop_table("scoring_submission")
    op.drop_table("scoring_state")
    op.drop_table("test_record")
    op.drop_table("test_set")
