"""Each session's command history: what was asked, the policy's verdict,
whether ChimeraX succeeded, how long it took (replayable as a script).

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")


def upgrade():
    op.create_table(
        "history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("verdict", sa.Text, sa.CheckConstraint("verdict IN ('allow', 'deny')"), nullable=False),
        sa.Column("ok", sa.Boolean),
        sa.Column("duration_ms", sa.Float),
    )
    op.create_index("history_by_session", "history", ["session_id", "id"])


def downgrade():
    op.drop_index("history_by_session", table_name="history")
    op.drop_table("history")
