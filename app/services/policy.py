"""The command policy: what a profile may send to ChimeraX, decided before sending.

A command line is split into commands the way ChimeraX splits it (`;`),
each command word is resolved the way ChimeraX resolves it (exact name, else
completion of a prefix), and the result is checked against the caller's
profile. Where our reading could differ from ChimeraX's, we deny:

- every `;` separates, even inside quotes (ChimeraX splits at fewer places,
  never more, so each piece it runs is one we checked or a part of one);
- an abbreviation is allowed only if every known command it could complete
  to is allowed; a word that completes to no known command is denied;
- control, invisible and non-ASCII space characters are denied outright;
- open/save take one file name, in the workspace, with an allowed suffix,
  and only the listed keywords, spelled out in full.
"""
import os
import re
import unicodedata
from dataclasses import dataclass

from .command_names import KNOWN_COMMANDS, TILDE_COMMANDS

VIEWER_COMMANDS = frozenset("""
open close show hide display style color colour cartoon ribbon surface transparency label
view turn move zoom clip cofr select measure info save lighting material graphics camera
rainbow size rock roll wobble stop pwd version usage wait undo redo align rmsd angle distance
dssp nucleotides delete rename split sym windowsize colordef colourdef
""".split())

OPEN_SUFFIXES = (".pdb", ".ent", ".pdb1", ".cif", ".mmcif", ".mrc", ".map", ".ccp4", ".dx", ".sdf", ".mol2")
SAVE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pdb", ".cif", ".mrc", ".map")
OPEN_KEYWORDS = {"format": ("pdb", "mmcif", "cif", "mrc", "ccp4", "dx", "sdf", "mol2"),
                 "name": None, "maxmodels": None, "autostyle": None, "coordsets": None}
SAVE_KEYWORDS = {"format": ("pdb", "mmcif", "png", "jpeg", "tiff", "bmp", "mrc"),
                 "width": None, "height": None, "supersample": None, "models": None,
                 "transparentbackground": None, "quality": None, "pixelsize": None,
                 "selectedonly": None, "displayedonly": None, "relmodel": None}
# Keywords of otherwise harmless commands that write files: any word that
# ChimeraX could complete to one of them is denied for that command.
FILE_KEYWORDS = {"info": ("savefile",), "measure": ("writesurfacedata",)}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._#:,/-]{1,64}$")
COMMAND_WORD = re.compile(r"^~?[A-Za-z0-9_]+$")
FETCH_ID = re.compile(r"^(pdb:)?[0-9][A-Za-z0-9]{3}$", re.I)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    verbs: tuple        # resolved command words, in order (for the audit log)
    reason: str = ""
    denied_verb: str = ""


class Denied(Exception):
    def __init__(self, reason, verb=""):
        super().__init__(reason)
        self.reason, self.verb = reason, verb


@dataclass(frozen=True)
class Profile:
    name: str
    commands: frozenset = None     # None: unrestricted
    allow_fetch: bool = False


def default_profiles(extra_viewer=(), denied_viewer=(), allow_fetch=False):
    viewer = (VIEWER_COMMANDS | set(extra_viewer)) - set(denied_viewer)
    return {"viewer": Profile("viewer", frozenset(viewer), allow_fetch),
            "trusted": Profile("trusted", None, True)}


def _check_characters(line):
    for ch in line:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or (category == "Zs" and ch != " "):
            raise Denied("control or invisible character U+%04X in the command" % ord(ch))


def tokenize(text):
    """Words of one command, quotes removed; an unterminated quote is denied."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        if text[i] in "\"'":
            end = text.find(text[i], i + 1)
            if end < 0:
                raise Denied("unterminated quote")
            tokens.append(text[i + 1:end])
            i = end + 1
        else:
            end = text.find(" ", i)
            end = n if end < 0 else end
            tokens.append(text[i:end])
            i = end
    return tokens


def resolve(word, profile):
    """The commands `word` could run as; Denied unless all are allowed."""
    if not COMMAND_WORD.match(word):
        raise Denied("not a command name: %r" % word[:40], word[:40])
    names = TILDE_COMMANDS if word.startswith("~") else KNOWN_COMMANDS
    candidates = [word] if word in names else sorted(n for n in names if n.startswith(word))
    if not candidates:
        raise Denied("unknown command %r" % word, word)
    if profile.commands is None:
        return candidates
    for name in candidates:
        if name.lstrip("~") not in profile.commands:
            raise Denied("command %r is not allowed" % name, name)
    return candidates


def _check_file(name, suffixes, workspace, verb, allow_fetch):
    if verb == "open" and FETCH_ID.match(name):
        if allow_fetch:
            return
        raise Denied("database fetches are not allowed", verb)
    if "://" in name:
        raise Denied("URLs are not allowed", verb)
    if not SAFE_NAME.match(name):
        raise Denied("file names must be plain names inside the session workspace", verb)
    if not name.lower().endswith(suffixes):
        raise Denied("%s does not take files of this type" % verb, verb)
    path = os.path.join(workspace, name)
    root = os.path.realpath(workspace)
    if os.path.realpath(path) != os.path.join(root, name):
        raise Denied("the file resolves outside the session workspace", verb)


def _check_file_command(verb, args, workspace, profile):
    suffixes, keywords = (OPEN_SUFFIXES, OPEN_KEYWORDS) if verb == "open" else (SAVE_SUFFIXES, SAVE_KEYWORDS)
    if not args:
        raise Denied("%s needs a file name" % verb, verb)
    _check_file(args[0], suffixes, workspace, verb, profile.allow_fetch)
    rest = args[1:]
    if len(rest) % 2:
        raise Denied("%s takes one file name, then keyword-value pairs" % verb, verb)
    for keyword, value in zip(rest[::2], rest[1::2]):
        allowed_values = keywords.get(keyword.casefold(), False)
        if allowed_values is False:
            raise Denied("%s keyword %r is not allowed (write keywords in full)" % (verb, keyword), verb)
        if allowed_values is not None and value.casefold() not in allowed_values:
            raise Denied("%s format %r is not allowed" % (verb, value), verb)
        if not SAFE_VALUE.match(value):
            raise Denied("%s keyword value %r is not allowed" % (verb, value[:40]), verb)


def _check_file_keywords(candidates, args):
    for name in candidates:
        for keyword in FILE_KEYWORDS.get(name, ()):
            for arg in args:
                if arg and keyword.startswith(arg.casefold()):
                    raise Denied("%s may not write files (%r)" % (name, arg), name)


def check(line, profile, workspace):
    """Verdict for a whole command line under `profile`."""
    verbs = []
    try:
        _check_characters(line)
        for piece in line.split(";"):
            piece = piece.strip(" ")
            if not piece or piece.startswith("#"):
                continue        # ChimeraX skips empty commands and comments
            tokens = tokenize(piece)
            candidates = resolve(tokens[0], profile)
            verbs.append(candidates[0] if len(candidates) == 1 else tokens[0] + "*")
            if profile.commands is None:
                continue
            for name in candidates:
                if name in ("open", "save"):
                    _check_file_command(name, tokens[1:], workspace, profile)
            _check_file_keywords(candidates, tokens[1:])
    except Denied as err:
        return Verdict(False, tuple(verbs), err.reason, err.verb)
    return Verdict(True, tuple(verbs))
