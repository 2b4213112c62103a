"""The command policy: profiles, as data the agent inside ChimeraX applies.

The decision on each command is taken by chimerax_agent/cxs_policy.py, on
ChimeraX's own parse of the line (the full registered command name, its
arguments by keyword name, file arguments as ChimeraX will use them), so no
second reading of ChimeraX's language exists to disagree with it. This
module holds the profiles — which command families, which files, which
bounds — and the one check that needs no parser: characters that have no
place in a command line.

Bounds name arguments as ChimeraX names them in a parsed command (`ms_map_size`,
what the user types as `msMapSize`), per full command name (`graphics quality`);
tests/test_policy.py checks, in the runtime, that every one is a real keyword
of its command, so a misspelt bound can never silently bound nothing.

`python -m app.services.policy` prints the viewer profile as docs/policy.md's
table (tests/test_policy_profiles.py checks the docs hold exactly that).
"""
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
import json
import unicodedata

from ..sessions.workspace import OPEN_SUFFIXES, SAVE_SUFFIXES

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
# Databases a viewer may `open` entries of (`db:id`, or `id from db`), when ALLOW_FETCH.
FETCH_DATABASES = ("pdb", "pdbe", "pdbe_updated", "pdbj", "redo", "alphafold", "alphafold_pae", "emdb",
                   "uniprot", "pubchem", "cod", "pcod", "pdbdev", "esmfold", "ccd")
FORMATS = ("pdb", "mmcif", "cif", "mrc", "ccp4", "dx", "sdf", "mol2", "png", "jpeg", "tiff", "bmp")

MAX_FRAMES = 600
# Every number of a viewer command is finite and at most this in magnitude:
# 1e308 clip planes, NaN angles and inf distances are not a view (the sizes of
# real scenes, in Å, degrees and pixels, are far below).
MAX_MAGNITUDE = 1e6
# What a command draws over frames: frames x window pixels (600 frames of a 1024 x 1024 window).
MAX_FRAME_PIXELS = MAX_FRAMES * 1024 * 1024
# Copies a symmetry group may make (`sym #1 c100000` draws for minutes; icosahedral is 60).
MAX_SYMMETRY_COPIES = 120
# Characters of a label's text: ChimeraX draws each label into an image as wide as its text.
LABEL_MAX_TEXT = 100

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
    "huge sizes, frame and shadow counts, non-finite numbers": "one command that runs for minutes, takes "
                                                               "gigabytes or leaves the session unable to draw",
}

# What the larger bounds stop, measured with the runtime here in its sandbox
# (tests/test_viewer_exhaustion.py tries every bound and these commands).
BOUND_REASONS = {
    "lighting": "multiShadow 1024 at 4096 x 4096 takes a minute a render (512: 27 s); shadow maps are "
                "size² textures (16384: 1.2-1.5 GB, 32768: every later render fails)",
    "graphics silhouettes": "a render's cost grows with width² (20: 17 s at 4096 x 4096; 1000: minutes)",
    "graphics quality": "triangles per atom and bond, and in all: the cost of every render",
    "camera": "cubePixels 8192: six 8192² textures, out of memory, every later render fails",
    "surface cap": "subdivision 100: 13 s and 24 s a render",
    "surface smooth": "iterations 10⁷ runs for minutes",
    "volume": "subdivisionLevels 6 multiplies triangles by 4096 (23 s a render)",
    "sym": "c1000 of a 66-atom peptide: 18 s a render, 34 s at 4096 x 4096",
    "label, 2dlabels": "each label is drawn into an image as wide as its text at its size: a long text then "
                       "a render ends ChimeraX; `{0.name:>300000000}` asks for 300 MB a label",
    "numbers": "`clip near -1e308 far 1e308` froze a session; `turn y 1e308` fails inside ChimeraX",
}


def viewer_bounds(max_pixels: int, max_supersample: int) -> dict[str, dict[str, tuple[float, float]]]:
    """(low, high) per keyword as ChimeraX names the argument in the parsed
    command, per full command name; '*': every command. A number given as text
    (`qualityOfShadows 16384`) is bounded too; (0, 0) on a switch: off only."""
    side = (1, max_pixels)
    labels2d: dict[str, tuple[float, float]] = {"size": (1, 100), "margin": (0, 100), "outline": (0, 20)}
    dashes = (0, 50)
    point_spacing = (0.1, 100)          # Å between points placed along bonds
    probe = (0, 10)                     # Å, probe sphere of a solvent surface
    return {
        "*": {"frames": (0, MAX_FRAMES)},
        "save": {"width": side, "height": side, "supersample": (1, max_supersample)},
        "windowsize": {"width": (16, max_pixels), "height": (16, max_pixels)},
        "lighting": {"multi_shadow": (0, 128), "ms_map_size": (16, 4096), "quality_of_shadows": (16, 8192),
                     "intensity": (0, 100), "fill_intensity": (0, 100), "ambient_intensity": (0, 100),
                     "depth_bias": (0, 1), "ms_depth_bias": (0, 1),
                     "depth_cue_start": (-10, 10), "depth_cue_end": (-10, 10)},
        "material": {"reflectivity": (0, 100), "specular_reflectivity": (0, 100), "exponent": (0, 10000),
                     "ambient_reflectivity": (0, 100)},
        "graphics quality": {"quality": (0.01, 4), "subdivision": (0.01, 4), "atom_triangles": (0, 2000),
                             "bond_triangles": (0, 2000), "total_atom_triangles": (0, 20000000),
                             "total_bond_triangles": (0, 20000000), "bond_sides": (0, 100),
                             "pseudobond_sides": (3, 100), "ribbon_divisions": (2, 40), "ribbon_sides": (4, 64),
                             "color_depth": (8, 16)},
        "graphics rate": {"max_frame_rate": (1, 60)},
        "graphics silhouettes": {"width": (0, 10), "depth_jump": (0, 1)},
        "graphics selection": {"width": (0, 20)},
        "camera": {"field_of_view": (1, 179), "cube_pixels": (16, 2048)},
        "label": {"size": (1, 100), "height": (0, 1000), "default_height": (0, 1000)},     # points; Å
        "2dlabels": labels2d, "2dlabels create": labels2d, "2dlabels change": labels2d,
        "2dlabels arrow": {"weight": (0, 10)},
        "distance": {"decimal_places": (0, 10), "dashes": dashes},
        "distance style": {"decimal_places": (0, 10), "dashes": dashes},
        "style": {"dashes": dashes},
        "hbonds": {"dist_slop": (0, 10), "angle_slop": (0, 180), "dashes": dashes},
        "contacts": {"distance_only": (0, 20), "overlap_cutoff": (-10, 10), "hbond_allowance": (-10, 10),
                     "dashes": dashes},
        "clashes": {"distance_only": (0, 20), "overlap_cutoff": (-10, 10), "hbond_allowance": (-10, 10),
                    "dashes": dashes},
        "size": {"atom_radius": (-50, 50), "stick_radius": (-20, 20), "pseudobond_radius": (-20, 20),
                 "ball_scale": (-10, 10)},       # a +/- delta is negative
        "surface": {"grid_spacing": (0.1, 10), "resolution": (0.5, 100), "probe_radius": probe, "nthread": (1, 64)},
        "surface cap": {"subdivision": (0, 10)},
        "surface smooth": {"iterations": (0, 100)},
        "surface zone": {"bond_point_spacing": point_spacing},
        "color zone": {"bond_point_spacing": point_spacing},
        "volume zone": {"bond_point_spacing": point_spacing},
        "interfaces": {"probe_radius": probe},
        "measure sasa": {"probe_radius": probe},
        "measure buriedarea": {"probe_radius": probe},
        "measure convexity": {"smoothing_iterations": (0, 100)},
        "addh": {"metal_dist": (0, 10)},
        "molmap": {"grid_spacing": (0.1, 10)},      # not a viewer command: bounds it where a deployment allows it
        # sym ... copies true: up to 60 copies of a structure (an icosahedral group)
        "sym": {"copies": (0, 0), "grid_spacing": (0.1, 10), "resolution": (0.5, 100)},
        "volume": {"subdivision_levels": (0, 2), "smoothing_iterations": (0, 100)},
        "volume new": {"size": (1, 512)},
        "volume localCorrelation": {"window_size": (2, 15)},
        "volume median": {"bin_size": (1, 15), "iterations": (0, 100)},
        "volume falloff": {"iterations": (0, 100)},
        "volume mask": {"extend": (0, 100)},
        "volume onesmask": {"extend": (0, 100)},
    }


def viewer_texts() -> dict[str, dict[str, tuple[int, str | None]]]:
    """(most characters, rule) per text keyword: 'format' for texts ChimeraX
    fills in with Python's str.format (only `{0.attribute}` fields, no
    widths past the length bound), 'attribute' for attribute names (plain
    names, none starting with '_')."""
    text = (LABEL_MAX_TEXT, None)
    return {
        "label": {"text": (LABEL_MAX_TEXT, "format"), "attribute": (64, "attribute")},
        "2dlabels": {"text": text}, "2dlabels create": {"text": text}, "2dlabels change": {"text": text},
    }


# Numbers that are values of the data (map levels, attribute ranges), not sizes
# of the view: finite, but not held to MAX_MAGNITUDE.
DATA_VALUES = {
    "volume": ("level", "rms_level", "sd_level", "enclose_volume", "fast_enclose_volume"),
    "volume threshold": ("minimum", "set", "maximum", "set_maximum"),
    "volume scale": ("shift", "factor"),
    "volume erase": ("value",),
    "volume octant": ("fill_value",),
    "volume ~octant": ("fill_value",),
    "color byattribute": ("range",),
    "color electrostatic": ("range",),
    "color sample": ("range",),
    "color gradient": ("range",),
}


def viewer_limits(render_max_pixels: int) -> dict[str, float]:
    """Parameters of the rules over several arguments (chimerax_agent/cxs_policy.py)."""
    return {"max_magnitude": MAX_MAGNITUDE, "render_max_pixels": render_max_pixels,
            "max_frame_pixels": MAX_FRAME_PIXELS, "max_symmetry_copies": MAX_SYMMETRY_COPIES}


@dataclass(frozen=True)
class Profile:
    name: str
    commands: tuple | None = None      # None: unrestricted (trusted)
    allow_fetch: bool = False
    bounds: dict = field(default_factory=dict)
    texts: dict = field(default_factory=dict)
    data_values: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)

    @property
    def restricted(self) -> bool:
        return self.commands is not None

    @cached_property
    def wire(self) -> str:
        """The profile as the agent reads it (header X-CXS-Profile)."""
        assert self.commands is not None        # only a restricted profile is sent
        return json.dumps({"name": self.name, "commands": list(self.commands), "allow_fetch": self.allow_fetch,
                           "open_suffixes": list(OPEN_SUFFIXES), "save_suffixes": list(SAVE_SUFFIXES),
                           "formats": list(FORMATS), "bounds": self.bounds, "texts": self.texts,
                           "fetch_databases": list(FETCH_DATABASES) if self.allow_fetch else [],
                           "data_values": self.data_values, "limits": self.limits}, separators=(",", ":"))


def default_profiles(extra_viewer: Iterable[str] = (), denied_viewer: Iterable[str] = (), allow_fetch: bool = False,
                     max_pixels: int = 4096, max_supersample: int = 4,
                     render_max_pixels: int = 4096 * 4096) -> dict[str, Profile]:
    viewer = tuple(sorted((set(VIEWER_COMMANDS) | set(extra_viewer)) - set(denied_viewer)))
    return {"viewer": Profile("viewer", viewer, allow_fetch, viewer_bounds(max_pixels, max_supersample),
                              viewer_texts(), DATA_VALUES, viewer_limits(render_max_pixels)),
            "trusted": Profile("trusted")}


def forbidden_characters(line: str) -> str | None:
    """Why `line` is refused before any parser sees it, or None. Control,
    invisible and non-ASCII space characters have no place in a command and
    could hide one from a person reading the audit log."""
    for ch in line:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or (category == "Zs" and ch != " "):
            return "control or invisible character U+%04X in the command" % ord(ch)
    return None


def user_keyword(name: str) -> str:
    """A parsed keyword as the user types it (`ms_map_size` -> `msMapSize`), as ChimeraX's cli.user_kw."""
    words = name.split("_")
    return words[0] + "".join(word.capitalize() for word in words[1:])


def _of(command):
    return "every command" if command == "*" else "`%s`" % command


def markdown(profile: Profile) -> str:
    """The profile as the docs' tables (generated: never edit the copy in docs/policy.md by hand)."""
    assert profile.commands is not None     # the tables are of a restricted profile
    limits = profile.limits
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
    if limits:
        lines += [
            "| every number of every command | finite, at most %g in magnitude; values of the data (%s) "
            "finite only |" % (limits["max_magnitude"], ", ".join(
                "`%s` of `%s`" % ("`/`".join(user_keyword(k) for k in keys), command)
                for command, keys in sorted(profile.data_values.items()))),
            "| image `save` (and its default size: the window's, supersample 3) | (width × supersample) × "
            "(height × supersample) at most %d (`RENDER_MAX_PIXELS`) |" % limits["render_max_pixels"],
            "| `windowsize` | width × height at most %d (`RENDER_MAX_PIXELS`) |" % limits["render_max_pixels"],
            "| `frames` of every command | frames × window pixels at most %d |" % limits["max_frame_pixels"],
            "| symmetry groups (`sym`, `volume ... symmetry`) | at most %d copies (products `c2*d5` multiply) |"
            % limits["max_symmetry_copies"]]
    for command, limits_of in sorted(profile.texts.items()):
        for argument, (most, rule) in sorted(limits_of.items()):
            lines.append("| `%s` of %s | at most %d characters%s |" % (
                user_keyword(argument), _of(command), most,
                {"format": "; fields `{0.name}` only (attribute names, no widths over %d)" % most,
                 "attribute": "; a plain attribute name (`name`, `structure.name`), none starting with `_`",
                 None: ""}[rule]))
    for command, bounded in sorted(profile.bounds.items()):
        for argument, (low, high) in sorted(bounded.items()):
            allowed = "off only" if (low, high) == (0, 0) else "%g to %g" % (low, high)
            lines.append("| `%s` of %s | %s |" % (user_keyword(argument), _of(command), allowed))
    lines += ["", "| bounded | what it stops (measured here) |", "|---|---|"]
    lines += ["| %s | %s |" % (what, why) for what, why in BOUND_REASONS.items()]
    lines += ["", "| denied | why |", "|---|---|"]
    lines += ["| %s | %s |" % (what, why) for what, why in WHY_DENIED.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(default_profiles()["viewer"]))
