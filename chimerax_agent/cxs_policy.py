"""The command policy, decided inside ChimeraX on what ChimeraX itself parsed.

The service sends the caller's profile with each request (JSON, see
app/services/policy.py). A line is first parsed whole by ChimeraX's own
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
"""
import re

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FETCH_ID = re.compile(r"^(pdb:)?[0-9][A-Za-z0-9]{3}$", re.I)


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
                check_arguments(cli, self.command_name, self._ci, self._kw_args, profile)
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
    try:
        checking_command(session, profile, dry=True).run(text, log=False, log_only=True)
    except UserError:
        pass        # ChimeraX will say so itself, after running what came before, as it always does
    command = checking_command(session, profile, dry=False)
    try:
        with nested_checks(profile):
            return command.run(text, log=False, return_json=True), command.parsed
    except Refused as refusal:
        refusal.ran = command.parsed[:-1]
        raise


class nested_checks:
    """While a checked line runs, check the arguments of every other Command
    ChimeraX parses too (commands that parse their own options)."""

    def __init__(self, profile):
        from chimerax.core.commands import cli
        self.cli, self.profile = cli, profile

    def __enter__(self):
        cli, profile = self.cli, self.profile
        self.original = original = cli.Command._process_keyword_arguments

        def checked(command, *args):
            result = original(command, *args)
            if not getattr(command, "cxs_checking", False) and not command._error and command._ci is not None:
                check_arguments(cli, command.command_name, command._ci, command._kw_args, profile)
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


def check_arguments(cli, name, ci, kw_args, profile):
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
        check_bounds(name, arg, value, profile)


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
    if kind == "open" and FETCH_ID.match(value):
        if profile.get("allow_fetch"):
            return
        raise Refused(command, "database fetches are not allowed")
    if URL.match(value):
        raise Refused(command, "URLs are not allowed (%s)" % arg)
    if not SAFE_NAME.match(value):
        raise Refused(command, "%s: file names must be plain names in the session's folder" % arg)
    if not value.lower().endswith(tuple(profile["%s_suffixes" % kind])):
        raise Refused(command, "%s: files of this type are not allowed" % arg)


def check_bounds(command, arg, value, profile):
    bounds = dict(profile["bounds"].get("*", {}))
    bounds.update(profile["bounds"].get(command, {}))
    if arg not in bounds or value is None:
        return
    low, high = bounds[arg]
    if isinstance(value, bool):     # a switch bounded to (0, 0) may not be turned on
        if value and high < 1:
            raise Refused(command, "%s is not allowed" % arg)
        return
    for item in _flat(value):
        if isinstance(item, (int, float)) and not (low <= item <= high):
            raise Refused(command, "%s must be between %g and %g" % (arg, low, high))


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [value]
