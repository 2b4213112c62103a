"""Bundle registration, as the application does it at start-up.

The toolshed (toolshed.py) registers every bundle of the wheel from
bundles.json: commands and selectors lazily, then managers with their
providers (`open`, `save`, data formats, presets...) and each bundle's custom
initialisation, all through ChimeraX's own toolshed code.
"""


def register_all(session):
    from . import toolshed
    session.toolshed = toolshed.make_toolshed(session.logger)
    session.toolshed.bootstrap_bundles(session, False)

    # As the application does right after bootstrapping: commands that change
    # things register undo actions; tools are looked up by some commands.
    from chimerax.core import tools, undo
    session.tools = tools.Tools(session, first=True)
    session.undo = undo.Undo(session, first=True)

    # `toolshed install/update/...` runs pip against the remote toolshed: not
    # offered here (no network), so the command is not registered at all.
    from chimerax.core.commands.cli import deregister
    deregister("toolshed")
