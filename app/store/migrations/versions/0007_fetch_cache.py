"""The fetch broker's index: cached files by source URL, which sessions use
them, one download lease per URL, each user's recent fetches
(app/services/fetch).

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")


def upgrade():
    op.create_table(
        "fetch_cache",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("save_name", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.Column("last_used", Timestamp, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("fetch_cache_by_use", "fetch_cache", ["last_used"])
    op.create_table(
        "fetch_uses",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("url", sa.Text, primary_key=True),
    )
    op.create_index("fetch_uses_by_url", "fetch_uses", ["url"])
    op.create_table(
        "fetch_leases",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
    )
    op.create_table(
        "fetch_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
    )
    op.create_index("fetch_requests_by_user", "fetch_requests", ["user", "at"])


def downgrade():
    op.drop_table("fetch_requests")
    op.drop_table("fetch_leases")
    op.drop_table("fetch_uses")
    op.drop_table("fetch_cache")
