"""The command policy: profiles, as data the agent inside ChimeraX applies.

The decision on each command is taken by chimerax_agent/cxs_policy.py, on
ChimeraX's own parse of the line (the full registered command name, its
arguments by keyword name, file arguments as ChimeraX will use them), so no
second reading of ChimeraX's language exists to disagree with it. This
module holds the profiles — which command families, which files, which
bounds — and the one check that needs no parser: characters that have no
place in a command line.

`python -m app.services.policy` prints the viewer profile as the README's
table (tests/test_policy.py checks the README holds exactly that).
"""
import json
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

from .workspace import OPEN_SUFFIXES, SAVE_SUFFIXES

# Command families a viewer may run: a family allows the command of that name
# and its sub-commands (`measure` allows `measure sasa`); `~name` follows `name`.
VIEWER_COMMANDS = tuple(sorted(set("""
open close show hide display style color colour colordef colourdef cartoon ribbon surface
transparency label 2dlabels view turn move zoom clip cofr select measure info save lighting material
graphics camera rainbow size rock roll wobble stop pwd version usage wait undo redo align rmsd
angle distance dssp nucleotides delete rename split sym windowsize hbonds contacts clashes
interfaces addh matchmaker sequence volume
""".split())))

# Data formats `open`/`save` may name with `format` (never python, cmd, session, html).
FORMATS = ("pdb", "mmcif", "cif", "mrc", "ccp4", "dx", "sdf", "mol2", "png", "jpeg", "tiff", "bmp")
MAX_FRAMES = 600

WHY_DENIED = {
    "runscript, open of .py/.cxc, format python": "runs arbitrary Python or command scripts",
    "shell, pip, toolshed, devel": "shell access; installing or building code into ChimeraX",
    "cd, paths outside the workspace, log save, any file keyword (saveFile, writeSurfaceData, ...)":
        "reads or writes files beyond the session's own",
    "alias": "wraps any command under a new name",
    "perframe": "runs commands later",
    "remotecontrol": "opens more control channels",
    "exit, quit": "ends the session's process (DELETE does that)",
    "URLs, database fetches": "network access (off unless ALLOW_FETCH)",
    "huge sizes, frame and shadow counts": "one command that runs for minutes or takes gigabytes",
}


def viewer_bounds(max_pixels, max_supersample):
    """(low, high) per keyword as ChimeraX names the argument; '*': every command."""
    side = (1, max_pixels)
    return {
        "*": {"frames": (0, MAX_FRAMES)},
        "save": {"width": side, "height": side, "supersample": (1, max_supersample)},
        "windowsize": {"width": side, "height": side},
        "lighting": {"multi_shadow": (0, 1024), "shadow_map_size": (16, 8192),
                     "multi_shadow_map_size": (16, 4096)},
        "surface": {"grid_spacing": (0.1, 10), "resolution": (0.5, 100)},
        "molmap": {"grid_spacing": (0.1, 10)},
        # sym ... copies true: up to 60 copies of a structure (an icosahedral group)
        "sym": {"copies": (0, 0)},
    }


@dataclass(frozen=True)
class Profile:
    name: str
    commands: tuple = None      # None: unrestricted (trusted)
    allow_fetch: bool = False
    bounds: dict = field(default_factory=dict)

    @property
    def restricted(self):
        return self.commands is not None

    @cached_property
    def wire(self):
        """The profile as the agent reads it (header X-CXS-Profile)."""
        return json.dumps({"name": self.name, "commands": list(self.commands), "allow_fetch": self.allow_fetch,
                           "open_suffixes": list(OPEN_SUFFIXES), "save_suffixes": list(SAVE_SUFFIXES),
                           "formats": list(FORMATS), "bounds": self.bounds}, separators=(",", ":"))


def default_profiles(extra_viewer=(), denied_viewer=(), allow_fetch=False, max_pixels=4096, max_supersample=4):
    viewer = tuple(sorted((set(VIEWER_COMMANDS) | set(extra_viewer)) - set(denied_viewer)))
    return {"viewer": Profile("viewer", viewer, allow_fetch, viewer_bounds(max_pixels, max_supersample)),
            "trusted": Profile("trusted")}


def forbidden_characters(line):
    """Why `line` is refused before any parser sees it, or None. Control,
    invisible and non-ASCII space characters have no place in a command and
    could hide one from a person reading the audit log."""
    for ch in line:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or (category == "Zs" and ch != " "):
            return "control or invisible character U+%04X in the command" % ord(ch)
    return None


def markdown(profile):
    """The profile as README tables (generated: never edit the README's copy by hand)."""
    lines = ["| allowed command families (and their sub-commands, `~` forms) |", "|---|",
             "| %s |" % " ".join("`%s`" % c for c in profile.commands), "",
             "| argument | allowed |", "|---|---|",
             "| files to open | plain names in the session's folder ending in %s |"
             % " ".join("`%s`" % s for s in OPEN_SUFFIXES),
             "| files to save (every file keyword of every command) | plain names ending in %s |"
             % " ".join("`%s`" % s for s in SAVE_SUFFIXES),
             "| `format` of open/save | %s |" % " ".join("`%s`" % f for f in FORMATS),
             "| URLs, database ids | %s |" % ("database ids for `open` only (ALLOW_FETCH)" if profile.allow_fetch
                                             else "never (ALLOW_FETCH=true allows `open` of database ids)")]
    for command, limits in sorted(profile.bounds.items()):
        for argument, (low, high) in sorted(limits.items()):
            allowed = "off only" if (low, high) == (0, 0) else "%g to %g" % (low, high)
            lines.append("| `%s` of %s | %s |" % (argument, "every command" if command == "*"
                                                 else "`%s`" % command, allowed))
    lines += ["", "| denied | why |", "|---|---|"]
    lines += ["| %s | %s |" % (what, why) for what, why in WHY_DENIED.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(default_profiles()["viewer"]))
