"""Session lists are pages, newest first (GET /api/sessions): indexes in that
order, for one user's sessions and for everyone's (admins), so a page costs
its own rows, not a sort of every session ever kept.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("sessions_by_user_created", "sessions", ["user", "created_at", "id"])
    op.create_index("sessions_by_created", "sessions", ["created_at", "id"])


def downgrade():
    op.drop_index("sessions_by_created", table_name="sessions")
    op.drop_index("sessions_by_user_created", table_name="sessions")
