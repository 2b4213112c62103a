"""Headless ChimeraX built from the PyPI library: `python -m cxs_runtime [flags]`.

Accepts the official application's headless flags so a launcher can start
either one the same way: --nogui, --offscreen, --silent, --cmd CMD (repeatable,
run in order), --script FILE, --exit, --version. Without --exit the process
serves its event loop until a command (e.g. `exit`) ends it.
"""
import argparse
import os
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="chimerax", description=__doc__.splitlines()[0])
    parser.add_argument("--nogui", action="store_true", help="text UI (the only UI here)")
    parser.add_argument("--offscreen", action="store_true", help="render through OSMesa")
    parser.add_argument("--silent", action="store_true", help="drop info and warning messages")
    parser.add_argument("--cmd", action="append", default=[], help="command to run at start")
    parser.add_argument("--script", action="append", default=[], help="Python file to run at start")
    parser.add_argument("--exit", action="store_true", help="quit after start-up commands")
    parser.add_argument("--version", action="store_true", help="print the version and quit")
    # The application ignores flags it does not use; so do we, for portability.
    opts, _unknown = parser.parse_known_args(argv)
    return opts


def build_session(opts):
    from chimerax.core.session import Session, register_misc_commands
    from chimerax.core import core_settings, attributes

    session = Session("ChimeraX", silent=opts.silent, offscreen_rendering=opts.offscreen)
    core_settings.init(session)
    register_misc_commands(session)
    attributes.RegAttrManager(session)

    from .textui import NoGuiLog
    session.logger.add_log(NoGuiLog())

    from . import registration
    registration.register_all(session)
    return session


def run_startup_commands(session, opts):
    """--cmd commands, then --script Python files (as the application: after the
    commands, before the event loop, with `session` in the script's globals)."""
    from chimerax.core.commands import run
    from chimerax.core.errors import NotABug
    from chimerax.core.scripting import open_python_script
    steps = [lambda text=text: run(session, text) for text in opts.cmd]
    steps += [lambda path=path: _run_script(open_python_script, session, path) for path in opts.script]
    for step in steps:
        try:
            step()
        except NotABug as err:
            session.logger.error(str(err))
        except Exception:
            session.logger.report_exception()


def _run_script(open_python_script, session, path):
    with open(path, "rb") as stream:
        open_python_script(session, stream, os.path.basename(path))


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    from . import bootstrap
    bootstrap.prepare()
    if opts.version:
        from chimerax.core import buildinfo
        print("UCSF ChimeraX version: %s (PyPI library)" % buildinfo.version)
        return os.EX_OK
    session = build_session(opts)
    if not opts.silent:
        from chimerax.core.logger import log_version
        log_version(session.logger)
    run_startup_commands(session, opts)
    if opts.exit:
        session.ui.quit()
    session.ui.event_loop()
    return os.EX_OK


if __name__ == "__main__":
    sys.exit(main())
