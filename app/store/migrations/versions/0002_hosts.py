"""Several service hosts on one database: who started each process, where it runs.

- `service`: the id every ChimeraX of this service carries in its
  environment, shared by all hosts (before: a hash of the SQLite path, which
  an upgraded file keeps, so processes started before the upgrade stay
  adoptable).
- `sessions` and `pool` gain `host_id` and `domain`; rows written before are
  given the upgrading host's (a SQLite store had only that one).
- `sweeps` is keyed by host and pid.

Revision ID: 0002
Revises: 0001
"""
import hashlib
import os
import socket
import time
import uuid

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.Double().with_variant(sa.REAL(), "sqlite")
CHECKS = {"pool": (sa.CheckConstraint("status IN ('starting', 'ready')"),), "sessions": ()}


def _legacy_service_id(bind):
    path = bind.engine.url.database
    if bind.dialect.name == "sqlite" and path:
        return hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:16]
    return uuid.uuid4().hex[:16]


def upgrade():
    bind = op.get_bind()
    attributes = op.get_context().config.attributes
    host_id = attributes.get("host_id") or socket.gethostname()
    domain = attributes.get("domain") or "local:" + socket.gethostname()

    service = op.create_table(
        "service",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.bulk_insert(service, [{"id": _legacy_service_id(bind), "created_at": time.time()}])

    for table in ("sessions", "pool"):
        with op.batch_alter_table(table, table_args=CHECKS[table]) as batch:
            batch.add_column(sa.Column("host_id", sa.Text))
            batch.add_column(sa.Column("domain", sa.Text))
        op.execute(sa.table(table, sa.column("host_id"), sa.column("domain")).update()
                   .values(host_id=host_id, domain=domain))
        with op.batch_alter_table(table, table_args=CHECKS[table]) as batch:
            batch.alter_column("host_id", existing_type=sa.Text, nullable=False)
            batch.alter_column("domain", existing_type=sa.Text, nullable=False)
            # The old release's tables let SQLite store a NULL id (a TEXT primary key allows it).
            batch.alter_column("id", existing_type=sa.Text, nullable=False)
    op.create_index("sessions_by_domain", "sessions", ["domain", "status"])
    with op.batch_alter_table("tokens", table_args=(sa.CheckConstraint("role IN ('user', 'admin')"),)) as batch:
        batch.alter_column("id", existing_type=sa.Integer, nullable=False)

    op.create_table(
        "sweeps_by_host",
        sa.Column("host_id", sa.Text, primary_key=True),
        sa.Column("pid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("last_run_at", Timestamp, nullable=False),
    )
    op.execute(sa.text("INSERT INTO sweeps_by_host (host_id, pid, runs, last_run_at)"
                       " SELECT :host, pid, runs, last_run_at FROM sweeps").bindparams(host=host_id))
    op.drop_table("sweeps")
    op.rename_table("sweeps_by_host", "sweeps")


def downgrade():
    op.create_table(
        "sweeps_by_pid",
        sa.Column("pid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("last_run_at", Timestamp, nullable=False),
    )
    op.execute("INSERT INTO sweeps_by_pid (pid, runs, last_run_at)"
               " SELECT pid, SUM(runs), MAX(last_run_at) FROM sweeps GROUP BY pid")
    op.drop_table("sweeps")
    op.rename_table("sweeps_by_pid", "sweeps")
    op.drop_index("sessions_by_domain", table_name="sessions")
    for table in ("sessions", "pool"):
        with op.batch_alter_table(table, table_args=CHECKS[table]) as batch:
            batch.drop_column("domain")
            batch.drop_column("host_id")
    op.drop_table("service")
