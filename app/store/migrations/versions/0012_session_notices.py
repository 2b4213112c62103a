"""Every change to a session's row is announced (issue 38): on PostgreSQL a
trigger sends NOTIFY cxs_sessions with the session's id ('*' for a
TRUNCATE) in the writing transaction, so that each process can keep the rows
its views show and forget one when told (store/session_views.py). In the
database, not in the store's statements: writes by any host, release or tool
are announced alike. SQLite has no notices and needs none (one host).

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The channel and payloads store/session_views.py listens for; spelled here so
# that this revision never changes with it.
UPGRADE = ["""
CREATE FUNCTION cxs_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('cxs_sessions', '*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cxs_sessions', OLD.id);
    ELSE
        PERFORM pg_notify('cxs_sessions', NEW.id);
        IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
            PERFORM pg_notify('cxs_sessions', OLD.id);
        END IF;
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER sessions_changed AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION cxs_session_changed()""",
    """CREATE TRIGGER sessions_emptied AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION cxs_session_changed()"""]
DOWNGRADE = ["DROP TRIGGER sessions_emptied ON sessions", "DROP TRIGGER sessions_changed ON sessions",
             "DROP FUNCTION cxs_session_changed()"]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
