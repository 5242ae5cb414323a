"""Job shards: one job's work split across workers, with state and partial results in Postgres

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the job_shards table and the job's sharding options."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sharding", sa.JSON(), nullable=True))
    op.create_table(
        "job_shards",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("result_sha256", sa.String(length=64), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error_code", sa.String(length=50), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_shards_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["result_sha256"], ["blobs.sha256"], name=op.f("fk_job_shards_result_sha256_blobs")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_job_shards_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_shards")),
        sa.UniqueConstraint("job_id", "index", name=op.f("uq_job_shards_job_id_index")),
    )
    with op.batch_alter_table("job_shards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_shards_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_shards_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_shards_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_shards_result_sha256"), ["result_sha256"], unique=False)


def downgrade() -> None:
    """Drop the job_shards table and the job's sharding options."""
    op.drop_table("job_shards")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("sharding")
