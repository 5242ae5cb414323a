"""Declared input normalization of models

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add models.normalization."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("normalization", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop models.normalization."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("normalization")
