"""Make the PyPI ChimeraX library importable the way the application imports it.

Each function fixes one thing the wheel lacks; the reason sits beside it.
Call them in the order `prepare()` does, before anything from chimerax.core.
"""
import collections
import collections.abc
import importlib.util
import os
import sys
import types


def alias_collections_abc():
    # grako (the atom-spec parser's generator, pinned old by the wheel) still
    # imports Mapping & co from `collections`; Python 3.10 removed those names.
    for name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence",
                 "Set", "MutableSet", "Iterable", "Callable", "Hashable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


def lazy_chimerax_package():
    # The wheel's chimerax/__init__.py imports ~150 bundles eagerly, some of
    # which need build tools (Cython) or Qt. The application never runs that
    # file: chimerax is a namespace there. Register the package without
    # executing it; each bundle is then imported only when a command needs it.
    if "chimerax" in sys.modules:
        return
    spec = importlib.util.find_spec("chimerax")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the ChimeraX library is not installed in this Python")
    package = types.ModuleType("chimerax")
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    sys.modules["chimerax"] = package


def app_dirs(app_name="ChimeraX", app_author="UCSF"):
    # Settings and caches look up chimerax.app_dirs, which the application's
    # startup defines. Without it settings files cannot be located.
    import appdirs
    import chimerax
    from chimerax.core import version
    dirs = appdirs.AppDirs(app_name, appauthor=app_author, version=version)
    chimerax.app_dirs = dirs
    chimerax.app_dirs_unversioned = appdirs.AppDirs(app_name, appauthor=app_author)
    # Where the application keeps its share/, bin/ and lib/ (help lookups
    # read these while registering commands): the runtime's own prefix.
    chimerax.app_data_dir = os.path.join(sys.prefix, "share")
    chimerax.app_bin_dir = os.path.join(sys.prefix, "bin")
    chimerax.app_lib_dir = os.path.join(sys.prefix, "lib")
    for path in (dirs.user_data_dir, dirs.user_config_dir, dirs.user_cache_dir):
        os.makedirs(path, exist_ok=True)
    return dirs


def install_text_ui():
    # chimerax.core.session imports chimerax.core.nogui for its default UI; the
    # wheel does not ship that module. Ours (textui) stands in for it.
    from . import textui
    sys.modules["chimerax.core.nogui"] = textui
    import chimerax.core
    chimerax.core.nogui = textui


def neutral_version_log():
    # log_version asks the toolshed for the ChimeraX-Core bundle's metadata,
    # which the wheel does not carry; report the library's own version instead.
    from chimerax.core import buildinfo, logger

    def log_version(log):
        log.info("UCSF ChimeraX version: %s (PyPI library, %s)"
                 % (buildinfo.version, buildinfo.date.split()[0]))
    logger.log_version = log_version


def no_toolshed_commands():
    # Before reporting an unknown command, the parser asks the toolshed for
    # commands of bundles not yet loaded. There is no toolshed here: declare
    # that table computed and empty, so "foo" is a plain UserError.
    from chimerax.core.commands import cli
    cli._available_commands = cli.RegisteredCommandInfo()


def no_network_fetch():
    # The service runs ChimeraX without network access by design; the mmCIF
    # reader looks up unknown residue templates online. Fail such fetches at
    # once with ChimeraX's own error type instead of waiting on a connection.
    from chimerax.core import fetch
    from chimerax.core.errors import UserError

    def retrieve_url(url, *args, **kw):
        raise UserError("Network access is disabled in this runtime (%s)" % url)
    fetch.retrieve_url = retrieve_url


def model_specs_for_json():
    # `open` with return_json (what every REST reply uses) names each opened
    # model with m.string(), which 1.7.1 defines only for structures: opening
    # a map over REST raised AttributeError. ChimeraX fixed it after 1.7.1
    # (open_command/cmd.py: '#' + id_string for other models); the same here.
    from chimerax.core.models import Model
    if not hasattr(Model, "string"):
        Model.string = lambda self, style=None: "#" + self.id_string


def prepare():
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    alias_collections_abc()
    lazy_chimerax_package()
    app_dirs()
    install_text_ui()
    neutral_version_log()
    no_toolshed_commands()
    no_network_fetch()
    model_specs_for_json()
    from . import variants
    variants.apply()
