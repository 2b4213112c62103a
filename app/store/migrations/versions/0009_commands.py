"""Commands as resources (issue 34): a history entry's command id, state,
background reply, user and running worker; open event streams per user.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

# As in tables.py, spelled here so that this revision never changes with it.
Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    for column in (sa.Column("command_id", sa.Text), sa.Column("status", sa.Text), sa.Column("result", sa.Text),
                   sa.Column("user", sa.Text), sa.Column("owner", sa.Text)):
        op.add_column("history", column)
    op.create_index("history_by_command", "history", ["command_id"])
    op.create_table(
        "event_streams",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
    )
    op.create_index("event_streams_by_user", "event_streams", ["user", "expires_at"])


def downgrade():
    op.drop_table("event_streams")
    op.drop_index("history_by_command", table_name="history")
    # SQLite recreates the table: its unnamed CHECK is given again, or it would be dropped.
    with op.batch_alter_table("history", table_args=(sa.CheckConstraint("verdict IN ('allow', 'deny')"),)) as batch:
        for name in ("owner", "user", "result", "status", "command_id"):
            batch.drop_column(name)
