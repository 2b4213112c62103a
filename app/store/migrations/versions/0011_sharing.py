"""Sharing and lifecycle webhooks (issue 36): shares with users, secret share
links, and the outbox of events for WEBHOOK_URLS.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

# As in tables.py, spelled here so that this revision never changes with it.
Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "shares",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("access", sa.Text, sa.CheckConstraint("access IN ('view', 'control')", name="shares_access"),
                  nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp),
        sa.Column("revoked_at", Timestamp),
    )
    op.create_index("shares_by_session", "shares", ["session_id"])
    op.create_index("shares_by_user", "shares", ["user"])
    op.create_table(
        "share_links",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp),
        sa.Column("revoked_at", Timestamp),
    )
    op.create_index("share_links_by_session", "share_links", ["session_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("session_id", sa.Text),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp),
        sa.Column("dead_at", Timestamp),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("outbox_pending", "outbox", ["delivered_at", "dead_at", "id"])


def downgrade():
    op.drop_table("outbox")
    op.drop_table("share_links")
    op.drop_table("shares")
