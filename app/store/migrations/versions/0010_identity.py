"""Portal identity (issue 35): a token's scopes, expiry, act-as pattern, note,
maker and last use; who a command was run via.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

# As in tables.py, spelled here so that this revision never changes with it.
Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TOKEN_COLUMNS = (("scopes", sa.Text), ("expires_at", Timestamp), ("act_as", sa.Text), ("note", sa.Text),
                 ("created_by", sa.Text), ("last_used", Timestamp))


def upgrade():
    for name, kind in TOKEN_COLUMNS:
        op.add_column("tokens", sa.Column(name, kind))
    op.add_column("history", sa.Column("via", sa.Text))


def downgrade():
    # SQLite recreates the tables: their unnamed CHECKs are given again, or they would be dropped.
    with op.batch_alter_table("history", table_args=(sa.CheckConstraint("verdict IN ('allow', 'deny')"),)) as batch:
        batch.drop_column("via")
    with op.batch_alter_table("tokens", table_args=(sa.CheckConstraint("role IN ('user', 'admin')"),)) as batch:
        for name, _ in reversed(TOKEN_COLUMNS):
            batch.drop_column(name)
