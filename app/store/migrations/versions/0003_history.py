"""Each session's command history: what was asked, the policy's verdict,
whether ChimeraX succeeded, how long it took (replayable as a script); and
suspended sessions: when, and the HMAC of their saved session file, keyed
with a secret of the service (new: `service.secret`).

Revision ID: 0003
Revises: 0002
"""
import secrets

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
    op.add_column("sessions", sa.Column("suspended_at", Timestamp))
    op.add_column("sessions", sa.Column("suspend_digest", sa.Text))
    op.add_column("service", sa.Column("secret", sa.Text))
    op.execute(sa.text("UPDATE service SET secret = :secret").bindparams(secret=secrets.token_hex(32)))


def downgrade():
    with op.batch_alter_table("service") as batch:
        batch.drop_column("secret")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("suspend_digest")
        batch.drop_column("suspended_at")
    op.drop_index("history_by_session", table_name="history")
    op.drop_table("history")
