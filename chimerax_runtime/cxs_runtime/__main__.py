"""Headless ChimeraX built from the PyPI library: `python -m cxs_runtime [flags] [files]`.

Starts as the official application does (src/bundles/core/src/__main__.py at
v1.6-v1.11; docs/runtime.md lists each point with where it was read):
long flags parsed by getopt, an unknown one ends with EX_USAGE (64); the
--cmd commands run, then each --script as the command `runscript <script>`
(so a path with a space must be quoted), a failure of either ends the start
with EX_SOFTWARE (70) and the traceback; then the version log, the data files
given as arguments (`open`), and only then the event loop, which also runs
every line read from stdin as a command (textui.py). --exit quits instead of
running the loop.
"""
import getopt
import os
import sys
import traceback

# The application's long options (with '=' where it takes a value); most only
# matter to a GUI and are accepted and ignored here, as a headless app would.
LONG_OPTIONS = (
    "debug", "nodebug", "devel", "nodevel", "exit", "noexit", "help", "gui", "nogui", "color", "nocolor",
    "lineprofile", "nolineprofile", "listioformats", "offscreen", "nooffscreen", "silent", "nosilent",
    "status", "nostatus", "stereo", "start=", "cmd=", "script=", "tools", "notools", "uninstall", "safemode",
    "usedefaults", "nousedefaults", "version", "toolshed=", "disable-qt", "color-scheme=",
)
USAGE = "[--nogui] [--offscreen] [--silent] [--cmd command] [--script \"python script and arguments\"] " \
        "[--exit] [--version] [files]"


class Options:
    def __init__(self):
        self.offscreen = self.silent = self.version = False
        self.event_loop = True
        self.commands, self.scripts = [], []


def parse_args(argv):
    """(options, data files) as the application's getopt parse gives them;
    SystemExit(EX_USAGE) with the usage on stderr for an unknown flag."""
    try:
        pairs, files = getopt.getopt(argv[1:], "", list(LONG_OPTIONS))
    except getopt.GetoptError as message:
        print("%s: %s" % (argv[0], message), file=sys.stderr)
        print("usage: %s %s\n" % (argv[0], USAGE), file=sys.stderr)
        raise SystemExit(os.EX_USAGE) from None
    opts = Options()
    for flag, value in pairs:
        if flag in ("--offscreen", "--nooffscreen"):
            opts.offscreen = flag == "--offscreen"
        elif flag in ("--silent", "--nosilent"):
            opts.silent = flag == "--silent"
        elif flag in ("--exit", "--noexit"):
            opts.event_loop = flag == "--noexit"
        elif flag == "--cmd":
            opts.commands.append(value)
        elif flag == "--script":
            opts.scripts.append(value)
        elif flag == "--version":
            opts.version = True
        elif flag == "--help":
            print("usage: %s %s" % (argv[0], USAGE))
            raise SystemExit(os.EX_OK)
    return opts, files


def build_session(opts):
    from chimerax.core import attributes, core_settings
    from chimerax.core.session import Session, register_misc_commands

    session = Session("ChimeraX", silent=opts.silent, offscreen_rendering=opts.offscreen)
    core_settings.init(session)
    register_misc_commands(session)
    attributes.RegAttrManager(session)

    from .textui import NoGuiLog
    session.logger.add_log(NoGuiLog())

    from . import registration
    registration.register_all(session)
    return session


def start_up(session, opts, files):
    """Everything before the event loop, in the application's order; an exit
    status when the start must end there, else None."""
    from chimerax.core.commands import StringArg, run
    from chimerax.core.errors import NotABug
    for text in opts.commands:
        try:
            run(session, text)
        except Exception:
            traceback.print_exc()
            return os.EX_SOFTWARE
    for script in opts.scripts:
        try:
            run(session, "runscript %s" % script)
        except SystemExit as exit:
            return exit.code
        except Exception:
            traceback.print_exc()
            return os.EX_SOFTWARE
    if not opts.silent:
        from chimerax.core.logger import log_version
        log_version(session.logger)
    for path in files:
        try:
            run(session, "open %s" % StringArg.unparse(path))
        except NotABug as err:
            session.logger.error(str(err))
        except Exception:
            traceback.print_exc()
            return os.EX_SOFTWARE
    return None


def main(argv=None):
    opts, files = parse_args(["chimerax"] + sys.argv[1:] if argv is None else argv)
    from . import bootstrap
    bootstrap.prepare()
    if opts.version:
        from chimerax.core import buildinfo
        print("UCSF ChimeraX version: %s (PyPI library)" % buildinfo.version)
        return os.EX_OK
    session = build_session(opts)
    ended = start_up(session, opts, files)
    if ended is not None:
        return ended
    if not opts.event_loop:
        return os.EX_OK
    try:
        session.ui.event_loop()
    except SystemExit as exit:
        return exit.code
    except Exception:
        traceback.print_exc()
        return os.EX_SOFTWARE
    return os.EX_OK


if __name__ == "__main__":
    code = main()
    # Non-daemon threads (ChimeraX's REST server) would keep a normal exit waiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else os.EX_SOFTWARE)
