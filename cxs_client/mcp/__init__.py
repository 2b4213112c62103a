"""`cxs mcp`: a Model Context Protocol server, so that AI assistants drive
ChimeraX through the service, as the user whose token they hold, under that
user's policy profile, limits and usage (docs/mcp.md).

`cxs mcp` speaks stdio and calls the service with CXS_URL/CXS_TOKEN;
`cxs mcp --http HOST:PORT` serves the streamable HTTP transport at /mcp,
where each connection's own bearer token is the one used against the API.

This module stays free of the SDK's imports: `cxs` parses its arguments for
every subcommand, and only `cxs mcp` needs the SDK (imported by `run`).
"""
import argparse
import os
import sys

ON_DISCONNECT = ("end", "suspend", "keep")
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cxs mcp` (the CLI's subcommand and `python -m cxs_client.mcp`)."""
    parser.add_argument("--http", metavar="[HOST:]PORT",
                        help="serve the streamable HTTP transport at /mcp instead of stdio; HOST defaults to "
                             "127.0.0.1 (loopback). Each connection authenticates with its own bearer token")
    parser.add_argument("--on-disconnect", choices=ON_DISCONNECT,
                        default=os.environ.get("CXS_MCP_ON_DISCONNECT", "end"),
                        help="what happens to the sessions a client created when it disconnects "
                             "(default: CXS_MCP_ON_DISCONNECT, else end)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="HOST[:PORT]",
                        help="with --http: a Host header to accept besides loopback's (DNS-rebinding "
                             "protection), e.g. the name a proxy forwards; repeat for several")


def parse_listen(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` (an IPv6 host in brackets) as (host, port); the host defaults to loopback."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("--http wants [HOST:]PORT, got %r" % text)
    return host, int(port)


def run(opts: argparse.Namespace) -> int:
    """Serve until the client goes (stdio) or until stopped (HTTP); the exit status."""
    if opts.on_disconnect not in ON_DISCONNECT:
        print("cxs mcp: CXS_MCP_ON_DISCONNECT must be one of %s" % ", ".join(ON_DISCONNECT), file=sys.stderr)
        return 2
    try:
        listen = parse_listen(opts.http) if opts.http else None
    except ValueError as err:
        print("cxs mcp: %s" % err, file=sys.stderr)
        return 2
    from .server import Options, serve  # the SDK: only for this subcommand
    token = os.environ.get("CXS_TOKEN") or None
    if listen is None and not token:
        print("cxs mcp: a token is needed for stdio (CXS_TOKEN)", file=sys.stderr)
        return 2
    try:
        options = Options(url=os.environ.get("CXS_URL", "http://127.0.0.1:8000").rstrip("/"),
                          # Over HTTP each connection brings its own: CXS_TOKEN is never shared with them.
                          token=None if listen else token,
                          listen=listen, on_disconnect=opts.on_disconnect, allowed_hosts=tuple(opts.allowed_host))
    except ValueError as err:
        print("cxs mcp: %s" % err, file=sys.stderr)
        return 2
    return serve(options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxs mcp", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
