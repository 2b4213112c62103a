"""Usage accounting and retention (issue 33): each session's CPU and memory
as last sampled, and the per-user, per-day usage of sessions that retention
deleted (rolled up first, in the same transaction).

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("sessions", sa.Column("cpu_seconds", sa.Float))
    op.add_column("sessions", sa.Column("memory_bytes", sa.BigInteger))
    op.add_column("sessions", sa.Column("memory_peak_bytes", sa.BigInteger))
    op.add_column("sessions", sa.Column("usage_process", sa.Text))
    op.add_column("sessions", sa.Column("usage_process_cpu", sa.Float))
    op.create_index("sessions_by_status_ended", "sessions", ["status", "ended_at"])
    op.create_table(
        "usage_daily",
        sa.Column("user", sa.Text, primary_key=True),
        sa.Column("day", sa.Text, primary_key=True),
        sa.Column("session_seconds", sa.Float, nullable=False),
        sa.Column("cpu_seconds", sa.Float, nullable=False),
        sa.Column("memory_peak_bytes", sa.BigInteger),
    )


def downgrade():
    op.drop_table("usage_daily")
    op.drop_index("sessions_by_status_ended", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("usage_process_cpu")
        batch.drop_column("usage_process")
        batch.drop_column("memory_peak_bytes")
        batch.drop_column("memory_bytes")
        batch.drop_column("cpu_seconds")
