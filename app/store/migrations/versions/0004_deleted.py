"""When a session was deleted (DELETE), apart from why it ended: a deleted
session is no longer served (404 session_deleted), while one that ended any
other way stays readable with its end reason.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")


def upgrade():
    op.add_column("sessions", sa.Column("deleted_at", Timestamp))
    # Sessions a DELETE ended before this revision were deleted then.
    op.execute(sa.text("UPDATE sessions SET deleted_at = ended_at WHERE end_reason = 'deleted'"))


def downgrade():
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("deleted_at")
