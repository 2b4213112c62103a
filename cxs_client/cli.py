"""`cxs`: the session service from the shell, for integration scripts.

Reads CXS_URL (default http://127.0.0.1:8000) and CXS_TOKEN from the
environment; `--act-as USER` (before the action) makes every request that
user's, for a token with the act-as scope. Prints JSON, or with -q only the essential value (an id), so
`SID=$(cxs create --file x.pdb -q)` works; `usage` prints a table and
`logs -f` a line per event (--json: JSON). Exit status: 0 ok, 1 a ChimeraX
command error, 2 an API error (its code is printed on stderr), 3 a command
still running when `command --wait` gave up, 130 `logs -f` ended by Ctrl-C.
"""
import argparse
from collections.abc import Sequence
import json
import sys

import requests

from . import cli_access, mcp
from .client import Client
from .errors import ApiError, CommandFailed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxs", description=__doc__.splitlines()[0])
    # Not dest "act_as": a sub-command's default of the same name would overwrite it.
    parser.add_argument("--act-as", dest="acting_as", metavar="USER",
                        help="act for this user (X-Act-As; the token needs the act-as scope)")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a session")
    create.add_argument("--label")
    create.add_argument("--idle-timeout", type=int)
    create.add_argument("--file", help="a structure file to open before the session is ready")
    create.add_argument("--no-wait", action="store_true")
    create.add_argument("-q", "--quiet", action="store_true", help="print only the session id")
    ls = sub.add_parser("ls", help="list sessions")
    ls.add_argument("--status", action="append", help="repeat for several")
    ls.add_argument("--user")
    ls.add_argument("--limit", type=int, help="only the newest N")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only ids")
    for name, help_text in (("get", "show a session"), ("rm", "end a session"), ("beat", "heartbeat"),
                            ("files", "list workspace files"), ("suspend", "save the scene, end the process"),
                            ("resume", "restore a suspended session (waits until it is active)")):
        sub.add_parser(name, help=help_text).add_argument("id")
    run = sub.add_parser("run", help="run a ChimeraX command line")
    run.add_argument("id")
    run.add_argument("command")
    run.add_argument("--json", action="store_true", help="print the whole result")
    run.add_argument("--no-wait", action="store_true",
                     help="start it in the background and print its id (see `command`, `logs -f`, `interrupt`)")
    command = sub.add_parser("command", help="show a command's state (and its reply, once it ended)")
    command.add_argument("id")
    command.add_argument("command_id")
    command.add_argument("--wait", type=float, metavar="SECONDS",
                         help="until it ends, at most this long; exit 1 unless it ended done")
    interrupt = sub.add_parser("interrupt", help="interrupt the running command as Ctrl-C would")
    interrupt.add_argument("id")
    interrupt.add_argument("--id", dest="command_id", help="only this command (default: whichever runs)")
    logs = sub.add_parser("logs", help="follow the session's log and commands as they happen")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", required=True,
                      help="follow the live event stream until the session ends (or Ctrl-C)")
    logs.add_argument("--json", action="store_true", help="each event as a line of JSON")
    upload = sub.add_parser("upload", help="upload a file to the workspace")
    upload.add_argument("id")
    upload.add_argument("path")
    download = sub.add_parser("download", help="download a workspace file")
    download.add_argument("id")
    download.add_argument("name")
    download.add_argument("-o", "--output")
    snapshot = sub.add_parser("snapshot", help="save a PNG rendered by ChimeraX")
    snapshot.add_argument("id")
    snapshot.add_argument("-o", "--output", required=True)
    snapshot.add_argument("--width", type=int, default=800)
    snapshot.add_argument("--height", type=int, default=600)
    snapshot.add_argument("--supersample", type=int, default=3)
    scene = sub.add_parser("scene", help="save the 3D scene as binary glTF (.glb)")
    scene.add_argument("id")
    scene.add_argument("-o", "--output", required=True)
    scene.add_argument("--size", type=float, help="scale the scene to this size")
    scene.add_argument("--flat-lighting", action="store_true")
    history = sub.add_parser("history", help="the session's commands (--cxc: as a ChimeraX script)")
    history.add_argument("id")
    history.add_argument("--cxc", action="store_true", help="print a replayable .cxc script")
    history.add_argument("--offset", type=int, default=0)
    history.add_argument("--limit", type=int, default=100)
    usage = sub.add_parser("usage", help="session-hours, CPU and peak memory per UTC day")
    usage.add_argument("--user", help="another user's (admins)")
    usage.add_argument("--since", help="the first day, YYYY-MM-DD (default: 30 days before --until)")
    usage.add_argument("--until", help="the last day, YYYY-MM-DD (default: today)")
    usage.add_argument("--json", action="store_true", help="print the whole reply")
    cli_access.add_parsers(sub)
    mcp.add_arguments(sub.add_parser("mcp", help="serve MCP for AI assistants: stdio, or --http "
                                                  "[HOST:]PORT (docs/mcp.md)"))
    return parser


def _print(data):
    print(json.dumps(data, indent=2, sort_keys=True))


def usage_table(report: dict) -> str:
    """The reply of GET /api/usage as a small table, a line per day and the totals."""
    def _line(day, figures):
        peak = figures["memory_peak_bytes"]
        return "%-10s %9.2f %11.1f %9s" % (day, figures["session_hours"], figures["cpu_seconds"],
                                          "-" if peak is None else "%.0f" % (peak / 2**20))
    lines = ["usage of %s, %s to %s (UTC)" % (report["user"], report["since"], report["until"]),
             "%-10s %9s %11s %9s" % ("day", "hours", "cpu s", "peak MiB")]
    lines += [_line(day["day"], day) for day in report["days"]]
    lines.append(_line("total", report["totals"]))
    return "\n".join(lines)


def event_line(event: dict) -> str | None:
    """An event as `cxs logs -f` prints it: a log message as ChimeraX wrote it
    (other levels than note prefixed), the rest in brackets. Commands without
    an id are the service's own (a snapshot's save): not printed."""
    kind, data = event["event"], event["data"] if isinstance(event["data"], dict) else {}
    if kind.startswith("command.") and not data.get("id"):
        return None
    if kind == "log":
        text = str(data.get("text", "")).rstrip("\n")
        return text if data.get("level") == "note" else "%s: %s" % (data.get("level"), text)
    if kind == "command.started":
        return "[started %s] %s" % (data.get("id"), data.get("command"))
    if kind == "command.ended":
        return "[%s %s]" % ("interrupted" if data.get("interrupted") else "ended", data.get("id"))
    if kind == "status":
        reason = data.get("end_reason")
        return "[session %s%s]" % (data.get("status"), ": " + reason if reason else "")
    if kind == "missed":
        return "[missed %s events]" % data.get("events")
    return None


def follow(client: Client, session_id: str, as_json: bool) -> None:
    """Print the session's events as they come, until its stream ends (the session ended)."""
    own_work = False        # a command of the service's own runs: its lines are left out too
    with client.events(session_id, reconnect=True) as stream:
        for event in stream:
            data = event["data"] if isinstance(event["data"], dict) else {}
            if event["event"] in ("command.started", "command.ended"):
                own_work = event["event"] == "command.started" and not data.get("id")
            line = json.dumps(event, sort_keys=True) if as_json else None if own_work else event_line(event)
            if line is not None:
                print(line, flush=True)        # as it happens, also into a pipe


def dispatch(client: Client, opts: argparse.Namespace) -> None:
    if opts.action == "create":
        session = client.create(label=opts.label, idle_timeout=opts.idle_timeout, wait=not opts.no_wait,
                                file=opts.file)
        print(session["id"]) if opts.quiet else _print(session)
    elif opts.action == "ls":
        sessions = client.list(status=opts.status, user=opts.user, limit=opts.limit)
        if opts.quiet:
            print("\n".join(s["id"] for s in sessions))
        else:
            _print(sessions)
    elif opts.action == "get":
        _print(client.get(opts.id))
    elif opts.action == "rm":
        client.delete(opts.id)
    elif opts.action == "beat":
        _print(client.heartbeat(opts.id))
    elif opts.action == "files":
        _print(client.files(opts.id))
    elif opts.action == "suspend":
        _print(client.suspend(opts.id))
    elif opts.action == "resume":
        _print(client.resume(opts.id))
    elif opts.action == "run" and opts.no_wait:
        started = client.run(opts.id, opts.command, wait=False)
        _print(started) if opts.json else print(started["id"])
    elif opts.action == "run":
        result = client.run(opts.id, opts.command, check=False)
        if opts.json:
            _print(result)
        else:
            for level in ("note", "warning", "error", "bug"):
                for message in result["log"][level]:
                    print(message.rstrip("\n"), file=sys.stdout if level == "note" else sys.stderr)
        if not result["ok"]:
            raise CommandFailed(result)
    elif opts.action == "command":
        if opts.wait is None:
            _print(client.command(opts.id, opts.command_id))
            return
        state = client.wait_for(opts.id, opts.command_id, timeout=opts.wait)
        _print(state)
        if state["status"] != "done":
            raise CommandFailed(state)
    elif opts.action == "interrupt":
        _print(client.interrupt(opts.id, opts.command_id))
    elif opts.action == "logs":
        follow(client, opts.id, opts.json)
    elif opts.action == "upload":
        _print(client.upload(opts.id, opts.path))
    elif opts.action == "download":
        client.download(opts.id, opts.name, dest=opts.output or opts.name)
    elif opts.action == "snapshot":
        client.snapshot(opts.id, opts.width, opts.height, opts.supersample, dest=opts.output)
    elif opts.action == "scene":
        options = {"flat_lighting": opts.flat_lighting}
        if opts.size is not None:
            options["size"] = opts.size
        client.scene(opts.id, dest=opts.output, **options)
    elif opts.action == "history":
        if opts.cxc:
            sys.stdout.write(client.history_script(opts.id))
        else:
            _print(client.history(opts.id, opts.offset, opts.limit))
    elif opts.action == "usage":
        report = client.usage(user=opts.user, since=opts.since, until=opts.until)
        _print(report) if opts.json else print(usage_table(report))
    elif opts.action == "token":
        cli_access.token(client, opts)
    elif opts.action == "share":
        cli_access.share(client, opts)


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.action == "mcp":      # serves until its client goes; no client of its own here
        return mcp.run(opts)
    if opts.action == "share":
        cli_access.share_verb(opts)         # a usage error before a token is asked for
    try:
        dispatch(Client(act_as=opts.acting_as), opts)
    except CommandFailed as err:
        print("cxs: ChimeraX: %s" % err, file=sys.stderr)
        return 1
    except ApiError as err:
        print("cxs: %s (%s): %s" % (err.status, err.code, err.message), file=sys.stderr)
        return 2
    except ValueError as err:
        print("cxs: %s" % err, file=sys.stderr)
        return 2
    except requests.RequestException as err:
        print("cxs: %s" % err, file=sys.stderr)
        return 2
    except TimeoutError as err:
        print("cxs: %s" % err, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
