"""Regenerate cxs_runtime/bundles.json: what the toolshed would know of each
bundle in the ChimeraX wheel, read from the bundle's bundle_info.xml (or, for
the few bundles already converted, its pyproject.toml) in ChimeraX's public
sources (RBVI/ChimeraX) at the release the wheel is built from.

    python chimerax_runtime/generate_bundles.py CHIMERAX_GIT_CHECKOUT [--tag v1.7.1]
        [--site-packages .chimerax/venv/lib/python3.X/site-packages]

Only bundles whose package the wheel ships are kept. For each the table
holds what the toolshed reads from installed metadata (toolshed/installed.py
turns bundle_info.xml into the same facts): name, version, API package,
custom initialisation, session versions, commands and selectors (from the
ChimeraX classifiers), managers, providers with their attributes (all strings,
as in metadata), and initialisation order. Tools (GUI panels) are left out:
the runtime has no GUI.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "cxs_runtime", "bundles.json")


def _git(checkout, *args):
    return subprocess.run(["git", "-C", checkout] + list(args), capture_output=True, text=True,
                          check=True).stdout


def _classifiers(root):
    for node in root.iter("ChimeraXClassifier"):
        parts = [p.strip() for p in (node.text or "").split("::")]
        if parts and parts[0] == "ChimeraX":
            parts = parts[1:]
        yield parts


def parse(text, source):
    root = ElementTree.fromstring(text)
    bundle = {
        "name": root.get("name"), "version": root.get("version"), "package": root.get("package"),
        "custom_init": root.get("customInit", "false") == "true",
        "session_versions": [int(root.get("minSessionVersion", "1")), int(root.get("maxSessionVersion", "1"))],
        "synopsis": (root.findtext("Synopsis") or "").strip(),
        "categories": [c.get("name") for c in root.iter("Category")],
        "source": source, "commands": [], "selectors": [], "managers": {}, "providers": {}, "inits": {},
    }
    for parts in _classifiers(root):
        if parts[0] == "Command" and len(parts) == 4:
            bundle["commands"].append({"name": parts[1], "categories": [c.strip() for c in parts[2].split(",")],
                                       "synopsis": parts[3]})
        elif parts[0] == "Selector" and len(parts) in (3, 4):
            bundle["selectors"].append({"name": parts[1], "synopsis": parts[2],
                                        "atomic": len(parts) == 3 or parts[3].lower() != "false"})
    for managers in root.iter("Managers"):
        for manager in managers.iter("Manager"):
            attributes = dict(manager.attrib)
            bundle["managers"][attributes.pop("name")] = attributes
    for providers in root.iter("Providers"):
        for provider in providers.iter("Provider"):
            attributes = dict(provider.attrib)
            manager = attributes.pop("manager", providers.get("manager"))
            bundle["providers"]["%s/%s" % (manager, attributes.pop("name"))] = attributes
    for init in root.iter("InitAfter"):
        bundle["inits"].setdefault(init.get("type"), []).append(init.get("bundle"))
    return bundle


# What ChimeraX's bundle builder (bundle_builder_toml.py in the wheel) fills in
# for a pyproject.toml entry that leaves it out, before writing the metadata.
TOML_DEFAULTS = {
    "data formats": {"category": "General", "encoding": "utf-8", "nicknames": None, "reference-url": None,
                     "suffixes": None, "synopsis": None, "allow-directory": False, "insecure": False,
                     "mime-types": []},
    "open": {"batch": False, "check-path": True, "is-default": True, "pregrouped-structures": False,
             "type": "open", "want-path": False},
    "fetch": {"batch": False, "check-path": False, "is-default": True, "pregrouped-structures": False,
              "type": "fetch", "want-path": False},
    "save command": {"compression-okay": True, "is-default": True},
    "presets": {"category": "General"},
    "manager": {"gui-only": False, "autostart": False},
}


def _metadata_value(value):
    # As the builder writes a classifier value (and the toolshed reads it back: a string).
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _attributes(attrs, defaults):
    merged = dict(defaults)
    merged.update(attrs or {})
    return {key.replace("-", "_"): _metadata_value(value) for key, value in merged.items()
            if not (isinstance(value, list) and not value)}


def parse_toml(text, source):
    data = tomllib.loads(text)
    project, chimerax = data["project"], data.get("chimerax", {})
    name = project["name"].replace("_", "-")
    package = "chimerax." + chimerax["module-name-override"] if "module-name-override" in chimerax \
        else name.replace("-", ".").lower()
    bundle = {
        "name": name, "version": project.get("version", ""), "package": package,
        "custom_init": str(chimerax.get("custom-init", "")).lower() == "true",
        "session_versions": [chimerax.get("min-session-version", 1), chimerax.get("max-session-version", 1)],
        "synopsis": project.get("description", ""), "source": source,
        "categories": list(chimerax.get("categories", [])),
        "commands": [], "selectors": [], "managers": {}, "providers": {}, "inits": {},
    }
    for command, attrs in chimerax.get("command", {}).items():
        categories = attrs.get("category", attrs.get("categories", ""))
        bundle["commands"].append({
            "name": command, "synopsis": attrs.get("synopsis", attrs.get("description", "")),
            "categories": [categories] if isinstance(categories, str) else list(categories)})
    for selector, attrs in chimerax.get("selector", {}).items():
        bundle["selectors"].append({"name": selector, "synopsis": attrs.get("synopsis", attrs.get("description", "")),
                                    "atomic": str(attrs.get("atomic", True)).lower() != "false"})
    for manager, attrs in chimerax.get("manager", {}).items():
        bundle["managers"][manager] = _attributes(attrs, TOML_DEFAULTS["manager"])
    providers = bundle["providers"]
    for provider, attrs in chimerax.get("provider", {}).items():
        attrs = dict(attrs)
        providers["%s/%s" % (attrs.pop("manager"), provider)] = _attributes(attrs, {})
    for provider, attrs in chimerax.get("preset", {}).items():
        providers["presets/" + provider] = _attributes(attrs, TOML_DEFAULTS["presets"])
    for fmt, attrs in chimerax.get("data-format", {}).items():
        attrs = dict(attrs)
        for kind, manager in (("open", "open command"), ("save", "save command")):
            entries = attrs.pop(kind, None)
            entries = [None] if entries is True else ([] if entries in (None, False) else
                                                      entries if isinstance(entries, list) else [entries])
            for entry in entries:
                entry = dict(entry or {})
                if kind == "open" and entry.get("type") == "fetch":
                    key_name, entry["format-name"] = entry.pop("name"), fmt
                    providers["open command/" + key_name] = _attributes(entry, TOML_DEFAULTS["fetch"])
                else:
                    defaults = TOML_DEFAULTS["open" if kind == "open" else manager]
                    providers["%s/%s" % (manager, fmt)] = _attributes(entry, defaults)
        providers["data formats/" + fmt] = _attributes(attrs, TOML_DEFAULTS["data formats"])
    inits = chimerax.get("initializations", chimerax.get("initialization", {}))
    if isinstance(inits, list):
        inits = {entry["type"]: {"bundles": entry["bundles"]} for entry in inits}
    elif "type" in inits:
        inits = {inits["type"]: {"bundles": inits["bundles"]}}
    for kind, entry in inits.items():
        bundle["inits"].setdefault(kind, []).extend(entry["bundles"])
    return bundle


# What the wheel ships but cannot run, each with the reason (checked when the
# table is made: a reason that no longer holds fails the generation). Left out
# of the table, so the runtime neither registers nor initialises them.
UNAVAILABLE = {
    "ChimeraX-Dicom": ("the bundle imports pydicom and tcia_utils (a web-database client built on pandas) "
                       "at start; the runtime installs neither", "chimerax/dicom/dicom/databases/tcia.py"),
    "alignments/Conservation": ("its module (alignment_headers/conservation.py) is missing from the wheel",
                                "!chimerax/alignment_headers/conservation.py"),
    "alignments/RMSD": ("its module (alignment_headers/rmsd.py) is missing from the wheel",
                        "!chimerax/alignment_headers/rmsd.py"),
    # A command: registered as a stand-in that answers UserError with the reason.
    "2dlabels": ("draws its text with Qt, which the runtime does not have (a 2D label would make every "
                 "later image fail)", "!Qt"),
}



def _check_unavailable(site_packages):
    """Each reason rests on a file in the wheel being there (or, with !, absent)."""
    for name, (reason, evidence) in UNAVAILABLE.items():
        absent = evidence.startswith("!")
        path = os.path.join(site_packages, evidence.lstrip("!"))
        if os.path.exists(path) == absent:
            raise SystemExit("%s: %r no longer holds (%s)" % (name, reason, path))


def _drop_unavailable(bundles):
    for bundle in bundles:
        for key in [k for k in bundle["providers"] if k in UNAVAILABLE]:
            del bundle["providers"][key]
    return [b for b in bundles if b["name"] not in UNAVAILABLE]


PROBE = """
import json, sys
from chimerax.core.commands import run
from cxs_runtime import toolshed
for name in json.load(open(sys.argv[-1])):
    run(session, "usage " + name, log=False)       # registers it, or its stand-in
print("CXS-PROBE " + json.dumps(toolshed.UNAVAILABLE_COMMANDS))
"""


def probe_commands(table_path, names):
    """Commands of the table the wheel cannot register (a module it lacks): {name: reason},
    found by the runtime itself (its toolshed turns each into a UserError)."""
    import tempfile
    runtime = os.path.join(HERE, "..", ".chimerax", "bin", "chimerax")
    with tempfile.TemporaryDirectory() as scratch:
        script, listing = os.path.join(scratch, "probe.py"), os.path.join(scratch, "names.json")
        with open(script, "w") as out:
            out.write(PROBE.replace("sys.argv[-1]", repr(listing)))
        with open(listing, "w") as out:
            json.dump(names, out)
        env = dict(os.environ, PYTHONPATH=HERE)     # this checkout's cxs_runtime and table
        done = subprocess.run([os.path.join(HERE, "..", ".chimerax", "venv", "bin", "python"), "-m", "cxs_runtime",
                               "--nogui", "--offscreen", "--silent", "--exit", "--script", script],
                              capture_output=True, text=True, env=env, cwd=scratch, timeout=600)
    found = re.search(r"CXS-PROBE (.*)", done.stdout)
    if not found:
        raise SystemExit("the runtime probe failed:\n" + done.stdout[-3000:] + done.stderr[-3000:])
    return json.loads(found.group(1))


def _built_version(bundle, site_packages):
    # ChimeraX-Core takes its version from the build (buildinfo.py in the wheel).
    path = os.path.join(site_packages, *bundle["package"].split("."), "buildinfo.py")
    found = re.search(r"^version\s*=\s*['\"]([^'\"]+)", open(path).read(), re.M) if os.path.exists(path) else None
    return found.group(1) if found else "0"


def shipped(package, site_packages):
    return os.path.isdir(os.path.join(site_packages, *package.split(".")))


def _write(table):
    with open(OUTPUT, "w") as out:
        json.dump(table, out, indent=1, sort_keys=True)
        out.write("\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="a git clone of RBVI/ChimeraX")
    parser.add_argument("--tag", default="v1.7.1", help="the release the wheel is built from")
    default_site = (glob.glob(os.path.join(HERE, "..", ".chimerax", "venv", "lib", "python*", "site-packages"))
                    or [""])[0]
    parser.add_argument("--site-packages", default=default_site)
    opts = parser.parse_args(argv)
    commit = _git(opts.checkout, "rev-parse", opts.tag + "^{commit}").strip()
    files = set(_git(opts.checkout, "ls-tree", "-r", "--name-only", opts.tag).splitlines())
    paths = sorted(p for p in files if p.count("/") == 3 and p.startswith("src/bundles/") and (
        p.endswith("/bundle_info.xml") or p.endswith("/pyproject.toml")
        and os.path.dirname(p) + "/bundle_info.xml" not in files))
    bundles, skipped = [], []
    for path in paths:
        text = _git(opts.checkout, "show", "%s:%s" % (opts.tag, path))
        source = "RBVI/ChimeraX@%s:%s" % (opts.tag, path)
        if path.endswith(".toml"):
            if "[chimerax]" not in text:
                continue        # a build tool, not a bundle
            bundle = parse_toml(text, source)
            if not bundle["version"]:       # dynamic: src/__init__.py's __version__
                init = _git(opts.checkout, "show", "%s:%s/src/__init__.py" % (opts.tag, os.path.dirname(path)))
                found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", init, re.M)
                bundle["version"] = found.group(1) if found else _built_version(bundle, opts.site_packages)
        else:
            bundle = parse(text, source)
        if bundle["package"] and shipped(bundle["package"], opts.site_packages):
            bundles.append(bundle)
        else:
            skipped.append(bundle["name"])
    _check_unavailable(opts.site_packages)
    table = {"generated_by": "chimerax_runtime/generate_bundles.py",
             "source": {"repository": "https://github.com/RBVI/ChimeraX", "tag": opts.tag, "commit": commit},
             "not_in_the_wheel": skipped,
             "unavailable": {name: reason for name, (reason, _) in UNAVAILABLE.items()},
             "bundles": _drop_unavailable(bundles)}
    table["commands_unavailable"] = {}
    _write(table)
    # With the table in place, ask the runtime which commands it cannot register.
    commands = [c["name"] for b in table["bundles"] for c in b["commands"]]
    table["commands_unavailable"] = probe_commands(OUTPUT, commands)
    table["commands_unavailable"].update({name: table["unavailable"].pop(name) for name in commands
                                          if name in table["unavailable"]})
    _write(table)
    print("%d bundles written to %s (%d not in the wheel, %d unavailable)"
          % (len(table["bundles"]), OUTPUT, len(skipped), len(UNAVAILABLE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
