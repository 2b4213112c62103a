"""Transitions have an owner: the worker process carrying out a session's
start, end, suspend or resume (and a pool process's start), and which
operation it is, so a dead owner's work is resolved at once and a live
owner's is never taken over (app/services/owners.py).

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("sessions", sa.Column("owner", sa.Text))
    op.add_column("sessions", sa.Column("operation", sa.Text))
    op.add_column("pool", sa.Column("owner", sa.Text))


def downgrade():
    with op.batch_alter_table("pool", table_args=(sa.CheckConstraint("status IN ('starting', 'ready')"),)) \
            as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("operation")
        batch.drop_column("owner")
