"""`cxs token …` and `cxs share …`: who may use the service, and with whom a
session is shared (part of the `cxs` CLI, cxs_client/cli.py)."""
import argparse
import json
import re
import sys
import time

from .client import JSON, Client
from .errors import NotFound

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
SHARE_USAGE = ("cxs share SESSION USER --access view|control [--expires 1h]\n"
               "       cxs share ls SESSION\n"
               "       cxs share rm SESSION ID        (a share's or a link's id)\n"
               "       cxs share link SESSION [--expires 1h]")


def duration(text: str) -> int:
    """Seconds from `3600`, `90s`, `30m`, `1h` or `7d` (argparse's type for --expires)."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not found or int(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError("a duration such as 3600, 30m, 1h or 7d, not %r" % text)
    return int(found.group(1)) * UNITS[found.group(2)]


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    token = sub.add_parser("token", help="make, list and revoke API tokens")
    verbs = token.add_subparsers(dest="token_action", required=True)
    create = verbs.add_parser("create", help="make a token (its secret is printed this once)")
    create.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE",
                        help="repeat for several (default: all of yours): sessions:read, sessions:write, "
                             "sessions:command, files:read, files:write, admin:read, admin:write, act-as")
    create.add_argument("--expires", type=duration, metavar="DURATION", help="3600, 30m, 1h, 7d")
    create.add_argument("--note")
    create.add_argument("--user", help="admins: a token for this user")
    create.add_argument("--role", choices=("user", "admin"), help="admins: the token's role")
    # Not `act_as`: that is the global --act-as (the user this call acts for).
    create.add_argument("--act-as", dest="act_as_pattern", metavar="PATTERN",
                        help="users it may act for with X-Act-As (fnmatch, lab-*; needs --scope act-as)")
    create.add_argument("--json", action="store_true", help="print the whole reply")
    create.add_argument("-q", "--quiet", action="store_true", help="print only the secret")
    ls = verbs.add_parser("ls", help="list tokens (never their secrets)")
    ls.add_argument("--all", action="store_true", help="admins: everyone's")
    ls.add_argument("--user", help="admins: this user's")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only ids")
    verbs.add_parser("rm", help="revoke a token").add_argument("token_id", metavar="ID")

    # One parser for its four forms: `share SESSION USER` has no verb of its own,
    # which argparse's sub-commands cannot express (a session id is never a verb).
    share = sub.add_parser("share", help="share a session with a user, list, revoke, or make a link",
                           usage=SHARE_USAGE)
    share.add_argument("words", nargs="+", metavar="ARG")
    share.add_argument("--access", choices=("view", "control"))
    share.add_argument("--expires", type=duration, metavar="DURATION", help="3600, 30m, 1h, 7d")
    share.add_argument("--json", action="store_true", help="print the whole reply")
    share.set_defaults(share_parser=share)


def _when(value: str | None, never: str = "never") -> str:
    return value[:19].replace("T", " ") if value else never


def token_table(tokens: list[JSON]) -> str:
    """GET /api/tokens as a table, a line per token."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    lines = ["%-5s %-12s %-6s %-19s %-19s %-19s %-8s %s" % (
        "id", "user", "role", "created", "expires", "last used", "state", "scopes / note")]
    for t in tokens:
        state = "revoked" if t.get("revoked_at") else (
            "expired" if t.get("expires_at") and t["expires_at"][:19] <= now else "live")
        extra = " ".join(t.get("scopes") or [])
        if t.get("act_as"):
            extra += " (acts as %s)" % t["act_as"]
        if t.get("note"):
            extra += "  # %s" % t["note"]
        lines.append("%-5s %-12s %-6s %-19s %-19s %-19s %-8s %s" % (
            t["id"], t["user"], t["role"], _when(t.get("created_at"), ""), _when(t.get("expires_at")),
            _when(t.get("last_used"), "-"), state, extra))
    return "\n".join(lines)


def _print(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def token(client: Client, opts: argparse.Namespace) -> None:
    if opts.token_action == "create":
        made = client.create_token(scopes=opts.scopes, expires_in=opts.expires, note=opts.note, user=opts.user,
                                   role=opts.role, act_as=opts.act_as_pattern)
        if opts.json:
            _print(made)
        elif opts.quiet:
            print(made["token"])
        else:
            print("token   %s\nid      %s\nuser    %s (%s)\nscopes  %s\nexpires %s" % (
                made["token"], made["id"], made["user"], made["role"], " ".join(made["scopes"]),
                _when(made.get("expires_at"))))
            print("cxs: the token is shown this once; keep it", file=sys.stderr)
    elif opts.token_action == "ls":
        tokens = client.tokens(all=opts.all, user=opts.user)
        if opts.json:
            _print(tokens)
        elif opts.quiet:
            print("\n".join(str(t["id"]) for t in tokens))
        else:
            print(token_table(tokens))
    elif opts.token_action == "rm":
        client.revoke_token(opts.token_id)


def share_verb(opts: argparse.Namespace) -> str | None:
    """The form of `cxs share` asked for (None: share with a user), its words
    checked before anything is sent (argparse's error and exit 2 otherwise)."""
    words, parser = opts.words, opts.share_parser
    verb = words[0] if words[0] in ("ls", "rm", "link") else None
    wanted = {"ls": 2, "rm": 3, "link": 2, None: 2}[verb]
    if len(words) != wanted:
        parser.error("expected: " + {"ls": "share ls SESSION", "rm": "share rm SESSION ID",
                                     "link": "share link SESSION", None: "share SESSION USER --access ..."}[verb])
    if verb is None and opts.access is None:
        parser.error("--access view|control is required to share with a user")
    if verb in ("ls", "rm") and (opts.access or opts.expires):
        parser.error("--access and --expires are for sharing and making links")
    if verb == "link" and opts.access:
        parser.error("a link gives view access only: no --access")
    return verb


def share(client: Client, opts: argparse.Namespace) -> None:
    verb, words = share_verb(opts), opts.words
    if verb is None:
        _print(client.share(words[0], words[1], opts.access, opts.expires))
    elif verb == "ls":
        _print({"shares": client.shares(words[1]), "links": client.share_links(words[1])})
    elif verb == "rm":
        try:
            client.unshare(words[1], words[2])
        except NotFound:
            # Not a live share of it: a link's id, then (both are UUIDs, never the same).
            client.revoke_share_link(words[1], words[2])
    else:
        made = client.create_share_link(words[1], opts.expires)
        _print(made) if opts.json else print(made["url"])
