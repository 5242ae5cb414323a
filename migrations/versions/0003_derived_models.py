"""Derived models: lineage (source job, parent model) and a defended model's preprocessing

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add models.source_job_id, models.derived_from and models.preprocessing."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_job_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("derived_from", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("preprocessing", sa.JSON(), nullable=True))
        batch_op.create_index("ix_models_source_job_id", ["source_job_id"], unique=False)


def downgrade() -> None:
    """Drop the lineage and preprocessing columns."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index("ix_models_source_job_id")
        batch_op.drop_column("preprocessing")
        batch_op.drop_column("derived_from")
        batch_op.drop_column("source_job_id")
