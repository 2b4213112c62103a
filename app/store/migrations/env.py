"""Alembic's entry point: run by `schema` (and `flask db`), never by hand-made engines."""
from alembic import context

from app.store.tables import metadata


def run():
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
