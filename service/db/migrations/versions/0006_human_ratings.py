"""Human ratings of generation evaluations' outputs, and each evaluation's rating summary.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_rating",
        sa.Column(
            "evaluation_id", sa.Integer, sa.ForeignKey("evaluation.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("rater", sa.String(100), primary_key=True),
        sa.Column("rating", sa.Float, nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("evaluation") as batch:
        batch.add_column(sa.Column("human", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation") as batch:
        batch.drop_column("human")
    op.drop_table("evaluation_rating")
