"""Operator commands: `flask --app wsgi tokens create|list|revoke`, `sessions list|sweep`."""
import click
from flask.cli import AppGroup

from .context import get_store, get_token_service, runtime

tokens = AppGroup("tokens", help="Manage API tokens.")
sessions = AppGroup("sessions", help="Inspect and sweep sessions.")


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
