"""Operator commands: `flask --app wsgi tokens create|list|revoke`, `sessions list|sweep`,
`db current|upgrade|downgrade`."""
import click
from flask.cli import AppGroup

from .context import get_store, get_token_service, runtime
from .services.processes.launchers.local import machine_domain
from .store import database, schema

tokens = AppGroup("tokens", help="Manage API tokens.")
sessions = AppGroup("sessions", help="Inspect and sweep sessions.")
db = AppGroup("db", help="The store's schema version (Alembic).")


@db.command("current")
def db_current():
    """The database's revision and this code's."""
    url = runtime().url
    click.echo("%s: revision %s; this release: %s" % (
        database.describe(url), schema.current(url) or "none (empty)", schema.head()))


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision):
    """Upgrade to REVISION (default: this release's); a SQLite file is backed up first."""
    url = runtime().url
    before = schema.current(url)
    backup = schema.upgrade(url, revision, host_id=runtime().config["HOST_ID"], domain=machine_domain())
    if backup:
        click.echo("backed up %s to %s" % (database.sqlite_path(url), backup))
    click.echo("%s: %s -> %s" % (database.describe(url), before or "empty", schema.current(url)))


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision):
    """Downgrade to REVISION (back up first: columns of later revisions are dropped)."""
    url = runtime().url
    before = schema.current(url)
    schema.downgrade(url, revision)
    click.echo("%s: %s -> %s" % (database.describe(url), before, schema.current(url) or "empty"))


@tokens.command("create")
@click.option("--user", required=True, help="user name the token authenticates as")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
def create_token(user, role):
    """Create a token; it is printed once, as the last line."""
    try:
        token_id, token = get_token_service().create(user, role)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    click.echo("token %d for %s (%s); store it now, it is not shown again:" % (token_id, user, role))
    click.echo(token)


@tokens.command("list")
def list_tokens():
    for t in get_token_service().list():
        state = "revoked" if t.revoked_at else "active"
        click.echo("%d\t%s\t%s\t%s" % (t.id, t.user, t.role, state))


@tokens.command("revoke")
@click.argument("token_id", type=int)
def revoke_token(token_id):
    if not get_token_service().revoke(token_id):
        raise click.ClickException("no active token %d" % token_id)
    click.echo("revoked token %d" % token_id)


@sessions.command("list")
def list_sessions():
    for r in get_store().list_sessions():
        click.echo("%s\t%s\t%s\t%s" % (r.id, r.user, r.status, r.end_reason or ""))


@sessions.command("sweep")
def sweep_once():
    """Run one sweep now (e.g. from cron when no server is running)."""
    sweeper, close = runtime().make_sweeper()
    try:
        click.echo("ended: %s" % (sweeper.sweep() or "none"))
    finally:
        close()


def init_app(app):
    app.cli.add_command(tokens)
    app.cli.add_command(sessions)
    app.cli.add_command(db)
