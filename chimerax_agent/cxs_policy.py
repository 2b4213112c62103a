"""The command policy, decided inside ChimeraX on what ChimeraX itself parsed.

The service sends the caller's profile with each request (JSON, see
app/services/policy/profiles.py). A line is first parsed whole by ChimeraX's own
parser with execution switched off (`Command.run(..., log_only=True)`); each
command, as ChimeraX resolved it — its full registered name (`info notify
start`), its arguments by keyword name, file arguments as the paths it will
use — is checked against the profile before anything of the line runs. The
line then runs through the same checking parser, so a command whose parse
depends on what an earlier command did is checked again right before it
runs. Nothing re-reads ChimeraX's language outside ChimeraX, so there is no
second reading to disagree with.

Some commands parse part of their line again themselves: `open` and `save`
take their options (`format`, `from`, ...) as the rest of the line and run a
second Command over it with the chosen format's keywords. While a checked
line runs, every Command parse is checked the same way (nested_checks), so
`open x.pdb format python` is refused when `open` parses its options, before
any provider runs.

The hook is `Command._process_keyword_arguments`, the last parsing step of
each command before ChimeraX checks required arguments and calls it, and
`CmdDesc._required/_optional/_keyword` for argument annotations. Run and
tested against ChimeraX 1.7.1 (the PyPI library build); read against the
current RBVI/ChimeraX chimerax.core.commands.cli, whose `Command.run`
(`log_only`, the order of the parsing steps, `Alias.expand`) has the same
shape. Older cli.py versions call `_process_keyword_arguments(final)`
without `prev_annos`: the override takes either.

What a command may ask for is bounded on the same parse (profile `bounds`,
`texts`, `data_values`, `limits`, see app/services/policy/profiles.py): a keyword's
range; every number finite and of a sane magnitude; label texts short and
their `str.format` fields plain; and rules over several arguments and the
session's state — the pixels an image save draws (its default size is the
window's), a window's pixels, frames x window pixels, symmetry copies.
"""
import inspect
import math
import numbers
import re
import string

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A database entry `open` fetches: `db:id` (db one the profile lists) or a bare PDB id.
FETCH_ID = re.compile(r"^(?:([A-Za-z_]+):)?([A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")
PDB_ID = re.compile(r"^[0-9][A-Za-z0-9]{3}$")


class Refused(Exception):
    def __init__(self, command, reason):
        super().__init__(reason)
        self.command, self.reason = command, reason


def checking_command(session, profile, dry):
    """A ChimeraX Command that checks each parsed command against `profile`;
    `dry`: parse only (nothing runs, nothing is logged)."""
    from chimerax.core.commands import cli

    class CheckingCommand(cli.Command):
        cxs_checking = True

        def __init__(self):
            super().__init__(session)
            self.parsed = []

        def _process_positional_arguments(self):
            # The command itself first: a refused command's arguments are never parsed.
            if self._ci is not None:
                check_command(cli, self.command_name, self._ci, profile)
            return super()._process_positional_arguments()

        def _process_keyword_arguments(self, *args):     # (final, prev_annos); older: (final)
            result = super()._process_keyword_arguments(*args)
            if not self._error and self._ci is not None:
                check_arguments(cli, self.command_name, self._ci, self._kw_args, profile, session)
                if isinstance(self._ci.function, cli.Alias):
                    check_alias(session, self.command_name, self._ci.function, self._kw_args, profile)
                self.parsed.append(self.command_name)
            return result

        def log(self):
            if not dry:
                super().log()

    return CheckingCommand()


def run_checked(session, text, profile):
    """(results, commands parsed) of running `text`; Refused if any command is not allowed."""
    from chimerax.core.errors import UserError
    # The dry pass keeps a line's earlier commands from running when a later
    # one is refused. ChimeraX runs more than one command of a line only
    # where it has a `;`: a line without one is checked as it runs, one parse.
    if ";" in text:
        try:
            checking_command(session, profile, dry=True).run(text, log=False, log_only=True)
        except UserError:
            pass        # ChimeraX will say so itself, after running what came before, as it always does
    command = checking_command(session, profile, dry=False)
    try:
        with nested_checks(profile, session):
            return command.run(text, log=False, return_json=True), command.parsed
    except Refused as refusal:
        refusal.ran = command.parsed[:-1]
        raise


class nested_checks:
    """While a checked line runs, check the arguments of every other Command
    ChimeraX parses too (commands that parse their own options)."""

    def __init__(self, profile, session=None):
        from chimerax.core.commands import cli
        self.cli, self.profile, self.session = cli, profile, session

    def __enter__(self):
        cli, profile, session = self.cli, self.profile, self.session
        self.original = original = cli.Command._process_keyword_arguments

        def checked(command, *args):
            result = original(command, *args)
            if not getattr(command, "cxs_checking", False) and not command._error and command._ci is not None:
                check_arguments(cli, command.command_name, command._ci, command._kw_args, profile, session)
            return result
        cli.Command._process_keyword_arguments = checked
        return self

    def __exit__(self, *exc):
        self.cli.Command._process_keyword_arguments = self.original
        return False


def check_command(cli, name, ci, profile):
    if profile.get("commands") is None:
        return      # trusted: no rules; the sandbox contains it
    if isinstance(ci.function, cli.Alias) and ci.function.user_generated:
        raise Refused(name, "aliases defined in the session are not allowed")
    plain = name.lstrip("~")
    if not any(plain == family or plain.startswith(family + " ") for family in profile["commands"]):
        raise Refused(name, "command %r is not allowed" % name)


def check_alias(session, name, alias, kw_args, profile):
    """ChimeraX's own aliases (`~cartoon` ...) run their expansion through a plain
    parser: check what they expand to, arguments substituted, before it runs."""
    if profile.get("commands") is None:
        return
    from chimerax.core.errors import UserError
    args = [kw_args[key] for key in sorted(k for k in kw_args if isinstance(k, int))]
    text = alias.expand(*args, optional=kw_args.get("optional", ""))
    try:
        checking_command(session, profile, dry=True).run(text, log=False, log_only=True)
    except UserError:
        pass        # the expansion fails the same way when it runs
    except Refused as refusal:
        raise Refused(name, "%s (in what %s expands to)" % (refusal.reason, name)) from None


def check_arguments(cli, name, ci, kw_args, profile, session=None):
    if profile.get("commands") is None:
        return
    annotations = dict(ci._required)
    annotations.update(ci._optional)
    annotations.update(ci._keyword)
    for arg, value in kw_args.items():
        kind = file_kind(cli, annotations.get(arg))
        for item in _flat(value):
            if kind:
                check_file(name, arg, item, kind, profile)
            elif isinstance(item, str) and URL.match(item.strip()):
                raise Refused(name, "URLs are not allowed (%s)" % arg)
        if arg == "format" and name in ("open", "save") and value is not None \
                and str(value).lower() not in profile["formats"]:
            raise Refused(name, "format %r is not allowed" % value)
        if arg == "from_database" and name == "open" and value is not None and (
                not profile.get("allow_fetch") or str(value).lower() not in profile.get("fetch_databases", ())):
            raise Refused(name, "fetching from %r is not allowed" % value)
        check_bounds(name, arg, value, profile)
        check_numbers(name, arg, value, profile)
        check_text(name, arg, value, profile)
    check_together(name, ci, kw_args, profile, session)


def file_kind(cli, annotation):
    """'open' or 'save' for annotations that take file or folder names, else None."""
    if annotation is None:
        return None
    target = getattr(getattr(annotation, "parse", None), "__self__", annotation)   # RepeatOf wraps
    cls = target if isinstance(target, type) else type(target)
    names = " ".join(c.__name__ for c in cls.__mro__)
    if "FileName" not in names and "FolderName" not in names:
        return None
    return "save" if "Save" in cls.__name__ else "open"


def check_file(command, arg, value, kind, profile):
    value = str(value)
    fetched = FETCH_ID.match(value) if kind == "open" else None
    if fetched and (fetched.group(1) or PDB_ID.match(value)):
        if fetched.group(1) and fetched.group(1).lower() not in profile.get("fetch_databases", ()):
            raise Refused(command, "%s: not a database this service fetches from" % fetched.group(1))
        if profile.get("allow_fetch"):
            return
        raise Refused(command, "database fetches are not allowed")
    if URL.match(value):
        raise Refused(command, "URLs are not allowed (%s)" % arg)
    if not SAFE_NAME.match(value):
        raise Refused(command, "%s: file names must be plain names in the session's folder" % arg)
    if not value.lower().endswith(tuple(profile["%s_suffixes" % kind])):
        raise Refused(command, "%s: files of this type are not allowed" % arg)


def user_kw(arg):
    """A keyword as the user types it (`ms_map_size` -> `msMapSize`), as ChimeraX's cli.user_kw."""
    words = str(arg).split("_")
    return words[0] + "".join(word.capitalize() for word in words[1:])


def check_bounds(command, arg, value, profile):
    bounds = dict(profile["bounds"].get("*", {}))
    bounds.update(profile["bounds"].get(command, {}))
    if arg not in bounds or value is None:
        return
    low, high = bounds[arg]
    if isinstance(value, bool):     # a switch bounded to (0, 0) may not be turned on
        if value and high < 1:
            raise Refused(command, "%s is not allowed" % user_kw(arg))
        return
    for item in _flat(value):
        if isinstance(item, str):   # a number given as text (`qualityOfShadows 16384`); names pass
            try:
                item = float(item)
            except ValueError:
                continue
        if isinstance(item, numbers.Real) and not isinstance(item, bool) and not (low <= item <= high):
            raise Refused(command, "%s must be between %g and %g" % (user_kw(arg), low, high))


def check_numbers(command, arg, value, profile):
    """Every number finite and, unless a value of the data, at most `max_magnitude`."""
    magnitude = profile.get("limits", {}).get("max_magnitude")
    if magnitude is None:
        return
    data = arg in profile.get("data_values", {}).get(command, ())
    for number in _numbers(value):
        if not math.isfinite(number):
            raise Refused(command, "%s must be a finite number" % user_kw(arg))
        if not data and abs(number) > magnitude:
            raise Refused(command, "%s: numbers may be at most %g in magnitude" % (user_kw(arg), magnitude))


FIELD = re.compile(r"^0?(\.[A-Za-z][A-Za-z0-9_]*)*$")
ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def check_text(command, arg, value, profile):
    rule = profile.get("texts", {}).get(command, {}).get(arg)
    if rule is None or not isinstance(value, str):
        return
    most, kind = rule
    if len(value) > most:
        raise Refused(command, "%s may be at most %d characters (it has %d)" % (user_kw(arg), most, len(value)))
    if kind == "attribute" and not ATTRIBUTE.match(value):
        raise Refused(command, "%s must be a plain attribute name (letters, digits, '_' and '.', "
                               "no part starting with '_')" % user_kw(arg))
    if kind == "format":
        # ChimeraX fills the text in with str.format(object): fields may name
        # attributes, never reach beyond them or ask for a width of megabytes.
        try:
            fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(value) if name is not None]
        except ValueError:
            return          # not a format: ChimeraX shows the text as it is
        for name, spec in fields:
            widths = [int(n) for n in re.findall(r"\d+", spec or "")]
            if not FIELD.match(name) or "{" in (spec or "") or any(w > most for w in widths):
                raise Refused(command, "%s: fields may only be {0.attribute} (a plain attribute name, "
                                       "widths up to %d)" % (user_kw(arg), most))


def check_together(command, ci, kw_args, profile, session):
    """Rules over several arguments, and the session's state where a default depends on it."""
    limits = profile.get("limits")
    if not limits:
        return
    view = getattr(session, "main_view", None)
    if command == "save" and "supersample" in getattr(ci, "_keyword", {}):
        check_image_size(kw_args, limits["render_max_pixels"], view)
    if command == "windowsize" and view is not None:
        width, height = view.window_size
        width, height = kw_args.get("width") or width, kw_args.get("height") or height
        if width * height > limits["render_max_pixels"]:
            raise Refused(command, "a window of %d x %d = %d pixels is over RENDER_MAX_PIXELS (%d)"
                          % (width, height, width * height, limits["render_max_pixels"]))
    frames = kw_args.get("frames")
    if isinstance(frames, numbers.Real) and not isinstance(frames, bool) and view is not None:
        width, height = view.window_size
        if frames * width * height > limits["max_frame_pixels"]:
            raise Refused(command, "%d frames of a %d x %d window draw %d pixels, over %d: fewer frames "
                                   "or a smaller windowsize" % (frames, width, height, frames * width * height,
                                                                limits["max_frame_pixels"]))
    for value in kw_args.values():
        for item in _flat(value):
            group = getattr(item, "group", None) if type(item).__name__ == "Symmetry" else None
            if isinstance(group, str):      # chimerax.atomic.args.Symmetry: the group as typed
                copies = symmetry_copies(group)
                if copies > limits["max_symmetry_copies"]:
                    raise Refused(command, "symmetry %s makes %g copies, over %d" % (
                        group, copies, limits["max_symmetry_copies"]))


def check_image_size(kw_args, most, view):
    """The pixels an image save draws: (width x supersample) x (height x supersample),
    with ChimeraX's own defaults (the window's size and aspect, its default supersample)."""
    width, height = kw_args.get("width"), kw_args.get("height")
    supersample = kw_args.get("supersample") or _default_supersample()
    pixel_size = kw_args.get("pixel_size")
    if view is not None and getattr(view, "render", None) is not None:
        if pixel_size is not None and width is None and height is None:
            # As ChimeraX's image saver sizes it (it refuses what it cannot size).
            bounds = view.drawing_bounds()
            screen = view.pixel_size(bounds.center()) if bounds is not None else 0
            if bounds is None or not screen > 0 or not pixel_size > 0:
                return
            scale = screen / pixel_size
            window_width, window_height = view.window_size
            width, height = math.ceil(scale * window_width), math.ceil(scale * window_height)
        elif width is None or height is None:
            width, height = _matching_window(view, width, height)
    if width is None or height is None:
        return
    drawn = (width * supersample) * (height * supersample)
    if drawn > most:
        raise Refused("save", "the image would draw (%d x %d) x (%d x %d) = %d pixels, over RENDER_MAX_PIXELS "
                              "(%d): ask for a smaller width, height or supersample"
                      % (width, supersample, height, supersample, drawn, most))


def _matching_window(view, width, height):
    """The size ChimeraX gives an image of which one side or none is given: the
    window's aspect, as View._window_size_matching_aspect does on the render's
    size (the window's, times the display's pixel scale; the offscreen buffer
    takes the window's size only when it next draws)."""
    try:
        scale = view.render.pixel_scale()
    except Exception:
        scale = 1
    window_width, window_height = (int(side * scale) for side in view.window_size)
    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, (window_height * width) // window_width
    if height is not None:
        return (window_width * height) // window_height, height
    return window_width, window_height


def _default_supersample():
    try:
        from chimerax.image_formats.save import save_image
        return inspect.signature(save_image).parameters["supersample"].default or 1
    except Exception:
        return 3        # ChimeraX 1.x


def symmetry_copies(group):
    """How many copies a symmetry group (`c12`, `d5`, `h,rise,angle,n`, `shift,n,d`,
    `i`, `c2*d5`) makes, read from its numbers as ChimeraX's group_symmetries
    reads them; groups whose copies come from data (`biomt`, `#1`) count 1."""
    copies = 1.0
    for factor in group.lower().split("*"):
        fields = factor.strip().split(",")
        try:
            if re.fullmatch(r"[cd]\d+", fields[0]) and len(fields) == 1:
                count = int(fields[0][1:]) * (2 if fields[0][0] == "d" else 1)
            elif fields[0] == "h" and len(fields) in (4, 5):
                count = float(fields[3])
            elif fields[0] == "shift" or (fields[0] == "t" and len(fields) >= 3):
                count = float(fields[1])
            else:
                count = {"i": 60, "t": 12, "o": 24}.get(fields[0][:1], 1)
        except ValueError:
            count = 1       # ChimeraX refuses the group itself
        if not math.isfinite(count):
            return math.inf
        copies *= max(count, 1)
    return copies


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [value]


def _numbers(value):
    """The numbers an argument holds: plain, in lists and tuples, arrays, and
    points, axes and positions (cli Center/Axis coords, geometry Place matrix)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, numbers.Real):
        try:
            yield float(value)
        except OverflowError:       # an integer of hundreds of digits
            yield math.inf
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)
    elif hasattr(value, "dtype") and hasattr(value, "ravel"):
        if value.dtype.kind in "fiu" and value.size:
            import numpy
            finite = numpy.isfinite(value)
            yield float(numpy.abs(value[finite]).max()) if finite.all() else math.nan
    elif type(value).__name__ in ("Center", "Axis"):
        yield from _numbers(getattr(value, "coords", None))
    elif type(value).__name__ == "Place":
        yield from _numbers(getattr(value, "matrix", None))
