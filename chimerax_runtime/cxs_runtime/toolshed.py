"""The application's toolshed, fed from bundles.json instead of installed metadata.

The application builds one BundleInfo per installed bundle from the bundle's
distribution metadata (toolshed/installed.py), registers each bundle's
commands and selectors lazily (the bundle is imported when a command is first
typed), then starts the managers (open command, save command, data formats,
presets, ...) and hands each the providers bundles declare, and runs the
bundles' custom initialisation. The wheel ships the bundles' code but no
per-bundle metadata, so the same facts come from bundles.json, generated from
each bundle's bundle_info.xml in ChimeraX's sources (generate_bundles.py);
everything after that is ChimeraX's own toolshed code, unchanged.

What is not here: the remote toolshed (no network: `toolshed install` and
friends are not offered) and a cache of installed bundles.
"""
import json
import re
import os
from weakref import WeakValueDictionary

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundles.json")


def load_table(path=TABLE):
    with open(path) as text:
        return json.load(text)


UNAVAILABLE_COMMANDS = {}      # name -> why, for those registered as stand-ins so far


def unavailable_command(name, reason):
    """Register `name` as a command that always says why it cannot run here."""
    UNAVAILABLE_COMMANDS[name] = reason
    from chimerax.core.commands import CmdDesc, RestOfLine, register
    from chimerax.core.errors import UserError

    def refuse(session, arguments=None):
        raise UserError("%s is not available in this runtime: %s" % (name, reason))
    register(name, CmdDesc(optional=[("arguments", RestOfLine)], synopsis="not available: " + reason), refuse)


def bundle_infos(table):
    from chimerax.core.toolshed.info import BundleInfo, CommandInfo, SelectorInfo

    class RuntimeBundleInfo(BundleInfo):
        def _register_cmd(self, ci, logger):
            # The wheel lacks some modules bundles import when their command is
            # first used (a Qt panel, a sibling bundle, a submodule): the command
            # then answers with ChimeraX's ordinary UserError saying so, instead
            # of a failed registration reported as a bug at every use.
            try:
                super()._register_cmd(ci, logger)
            except Exception as err:
                reason = re.sub(r" \(/[^)]*\)", "", str(err).strip().splitlines()[-1])   # no host paths
                unavailable_command(ci.name, reason)
            # A bundle may register all its commands at once: those that cannot
            # run here keep their stand-ins.
            for name, reason in self.stand_ins.items():
                unavailable_command(name, reason)

    infos = []
    for entry in table["bundles"]:
        low, high = entry["session_versions"]
        bundle = RuntimeBundleInfo(entry["name"], True, version=entry["version"],
                            api_package_name=entry["package"], synopsis=entry["synopsis"],
                            session_versions=range(low, high + 1), custom_init=entry["custom_init"],
                            # Copies: managers pop keywords from these as they start.
                            managers={k: dict(v) for k, v in entry["managers"].items()},
                            providers={k: dict(v) for k, v in entry["providers"].items()},
                            inits={k: list(v) for k, v in entry["inits"].items()},
                            packages=[tuple(entry["package"].split("."))])
        bundle.commands = [CommandInfo(c["name"], c["categories"], c["synopsis"]) for c in entry["commands"]
                           if c["name"] not in table["commands_unavailable"]]
        bundle.stand_ins = {c["name"]: table["commands_unavailable"][c["name"]] for c in entry["commands"]
                            if c["name"] in table["commands_unavailable"]}
        bundle.selectors = [SelectorInfo(s["name"], s["synopsis"], s["atomic"]) for s in entry["selectors"]]
        infos.append(bundle)
    return infos


def make_toolshed(logger, table=None):
    """The toolshed singleton (chimerax.core.toolshed.get_toolshed()), every bundle registered."""
    from chimerax.core import toolshed, triggerset
    from chimerax.core.toolshed.installed import InstalledBundleCache

    class RuntimeToolshed(toolshed.Toolshed):
        def __init__(self):
            # Toolshed.__init__ reads installed distributions, a cache and the
            # remote toolshed; the state it sets up is set here instead.
            self.remote_url = None
            self._safe_mode = False
            self._repo_locator = None
            self._installed_bundle_info = InstalledBundleCache(bundle_infos(table))
            self._available_bundle_info = None
            self._installed_packages = {}
            self._manager_instances = WeakValueDictionary()
            self._cache_dir = None
            self.triggers = triggerset.TriggerSet()
            for name in (toolshed.TOOLSHED_BUNDLE_INFO_ADDED, toolshed.TOOLSHED_BUNDLE_INSTALLED,
                         toolshed.TOOLSHED_BUNDLE_UNINSTALLED, toolshed.TOOLSHED_BUNDLE_INFO_RELOADED,
                         toolshed.TOOLSHED_OUT_OF_DATE_BUNDLES, "selector registered",
                         "selector deregistered"):
                self.triggers.add_trigger(name)
            self._installed_bundle_info.register_all(logger, None, self._installed_packages)

        def _get_available_bundles(self, logger):
            return []       # offline: nothing beyond what is installed

        def find_bundle(self, name, logger, installed=True, version=None):
            # The same lookup (name or display name, superseded names, newest
            # version) as Toolshed.find_bundle, which imports pkg_resources
            # only to compare versions: 0.28 s of every start here.
            from packaging.version import Version
            wanted = name.casefold().replace("_", "-")
            names = {wanted, "chimerax-" + wanted}
            found = [bi for bi in (self._installed_bundle_info if installed else [])
                     if bi.name.casefold() in names or any(s.casefold() in names for s in bi.supersedes)]
            if version is not None:
                return next((bi for bi in found if bi.version == version), None)
            return max(found, key=lambda bi: Version(bi.version), default=None)

        def reload(self, logger, **kw):
            return {}

    table = table or load_table()
    toolshed._toolshed = RuntimeToolshed()
    # Commands known not to work here answer with the reason, without importing anything.
    for name, reason in table["commands_unavailable"].items():
        unavailable_command(name, reason)
    return toolshed._toolshed
