"""The schema of the releases before migrations (commit edfad2e and earlier).

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here: later changes to app.store.tables must not change what this revision made.
Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")


def upgrade():
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("role", sa.Text, sa.CheckConstraint("role IN ('user', 'admin')"), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_activity", Timestamp, nullable=False),
        sa.Column("idle_timeout", sa.Integer, nullable=False),
        sa.Column("max_lifetime", sa.Integer, nullable=False),
        sa.Column("workspace", sa.Text, nullable=False),
        sa.Column("ended_at", Timestamp),
        sa.Column("end_reason", sa.Text),
        sa.Column("port", sa.Integer),
        sa.Column("process", sa.Text),
        sa.Column("health_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("workspace_removed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("sessions_by_status", "sessions", ["status"])
    op.create_index("sessions_by_user", "sessions", ["user", "status"])
    op.create_table(
        "pool",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, sa.CheckConstraint("status IN ('starting', 'ready')"), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("directory", sa.Text, nullable=False),
        sa.Column("port", sa.Integer),
        sa.Column("process", sa.Text),
    )
    op.create_table(
        "sweeps",
        sa.Column("pid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("last_run_at", Timestamp, nullable=False),
    )


def downgrade():
    for table in ("sweeps", "pool", "sessions", "tokens"):
        op.drop_table(table)
