"""Commands the application registers from bundle metadata, registered by hand.

The wheel has no bundle metadata, so the toolshed registers nothing; each
call here is what the matching bundle's API would have done at start-up.
"""


def register_all(session):
    logger = session.logger

    # Structures need the atomic bundle's per-session state (templates,
    # change tracker, pseudobond manager) before the first one is opened.
    from chimerax.atomic import initialize_atomic
    initialize_atomic(session)

    # close, cd, pwd, view, color, style, show/hide, select, turn, zoom, exit, ...
    from chimerax.std_commands import register_commands
    register_commands(session)

    from chimerax.rest_server import bundle_api as rest_api
    rest_api.register_command("remotecontrol rest", logger)

    from . import io_commands
    io_commands.register_commands(logger)
