"""Commands the application registers from bundle metadata, registered by hand.

The wheel has no bundle metadata, so the toolshed registers nothing; each
call here is what the matching bundle's API would have done at start-up.
"""
import importlib

# Bundles whose commands are registered through their own bundle API, exactly
# as the toolshed does when a command is first typed: (module, command name).
BUNDLE_COMMANDS = (
    ("chimerax.surface", "surface"),
    ("chimerax.label", "label"),
    ("chimerax.list_info", "info"),
)


def initialize_bundles(session):
    # Bundle start-up the toolshed would run: per-session settings objects.
    from chimerax.surface import bundle_api as surface_api
    surface_api.initialize(session, None)     # surface settings (clip, wait, surface)


def register_bundle_commands(logger):
    for module_name, command in BUNDLE_COMMANDS:
        try:
            importlib.import_module(module_name).bundle_api.register_command(command, logger)
        except Exception as err:       # one missing bundle must not stop start-up
            logger.warning("command %r unavailable in this runtime: %s" % (command, err))


def register_all(session):
    logger = session.logger

    # Commands that change things register undo actions; tools are looked up
    # by some commands. The application's start-up creates both.
    from chimerax.core import tools, undo
    session.tools = tools.Tools(session, first=True)
    session.undo = undo.Undo(session, first=True)

    # Structures need the atomic bundle's per-session state (templates,
    # change tracker, pseudobond manager) before the first one is opened.
    from chimerax.atomic import initialize_atomic
    initialize_atomic(session)

    # Named selectors (protein, ligand, ions, helix, ...) used in atom specs.
    from chimerax.atomic.selectors import register_selectors
    register_selectors(logger)

    # close, cd, pwd, view, color, style, show/hide, select, turn, zoom, exit, ...
    from chimerax.std_commands import register_commands
    register_commands(session)

    from chimerax.rest_server import bundle_api as rest_api
    rest_api.register_command("remotecontrol rest", logger)

    initialize_bundles(session)
    register_bundle_commands(logger)

    # The core registers `toolshed ...`, but there is no toolshed here (no
    # bundle metadata, no network): without it those commands would crash.
    from chimerax.core.commands.cli import deregister
    deregister("toolshed")

    from . import io_commands
    io_commands.register_commands(logger)
