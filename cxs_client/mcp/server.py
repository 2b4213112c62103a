"""The MCP server of `cxs mcp`: its connections (links), their tokens, what
happens to their sessions when they go, and the two transports.

A *link* is one MCP client connection's view of the service: the API client
of that connection's own bearer token, the sessions it created, the session
its tools act on when none is named. Over stdio the process is the
connection (one link, its token CXS_TOKEN). Over streamable HTTP a
connection is an MCP session of the handshake protocol era (Mcp-Session-Id):
its link lives in the SDK's per-connection state and its end (the client's
DELETE, the SDK's idle timeout, the server stopping) runs the SDK's
per-connection teardown, which ends, suspends or keeps the sessions it made
(`--on-disconnect`). A request of the 2026-07-28 era over HTTP has no
connection at all: it gets a link of its own for that request, and its
sessions are kept (the service's idle timeout still applies to them).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
import logging
import os
import signal
import sys
import threading
from typing import Any, TypeVar

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import METHOD_NOT_FOUND
from mcp_types import Resource as MCPResource
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import AnyHttpUrl
import requests

from ..client import Client
from ..errors import ApiError

log = logging.getLogger("cxs.mcp")

T = TypeVar("T")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LIVE = ["starting", "active", "suspended"]
_LINK = "cxs.link"          # the key of a connection's link in the SDK's per-connection state


def _bound(name: str, default: float) -> float:
    """A bound from the environment (docs/mcp.md): a positive number, else `default`."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("%s must be a positive number, not %r" % (name, text))
    return value


@dataclass(frozen=True)
class Options:
    """What `cxs mcp` was started with; the bounds come from the environment (docs/mcp.md)."""
    url: str
    token: str | None                       # stdio's; None over HTTP, where each connection brings its own
    listen: tuple[str, int] | None = None   # (host, port) for HTTP; None: stdio
    on_disconnect: str = "end"
    allowed_hosts: tuple[str, ...] = ()
    # What one tool result may carry inline: an assistant's context is small and
    # clients refuse oversized messages; past these a tool says so (or links).
    max_image_bytes: int = field(default_factory=lambda: int(_bound("CXS_MCP_MAX_IMAGE_BYTES", 2 * 2**20)))
    max_file_bytes: int = field(default_factory=lambda: int(_bound("CXS_MCP_MAX_FILE_BYTES", 2**20)))
    max_scene_bytes: int = field(default_factory=lambda: int(_bound("CXS_MCP_MAX_SCENE_BYTES", 8 * 2**20)))
    max_text_chars: int = field(default_factory=lambda: int(_bound("CXS_MCP_MAX_TEXT_CHARS", 100_000)))
    timeout: float = field(default_factory=lambda: _bound("CXS_MCP_API_TIMEOUT", 120))

    @property
    def stdio(self) -> bool:
        return self.listen is None


class Link:
    """One MCP connection's view of the service (see the module's docstring)."""

    def __init__(self, options: Options, token: str, lasting: bool) -> None:
        self.options, self.lasting = options, lasting
        self._lock = threading.Lock()
        self.token = token
        self.client = Client(options.url, token, timeout=options.timeout)
        self.created: list[str] = []        # by this connection, oldest first: what its end ends
        self.current: str | None = None     # the session tools act on when none is named
        self.gone = False

    def use(self, token: str) -> None:
        """A later request of the connection with another token (an OIDC token
        refreshed): from now on its calls are made with that one."""
        with self._lock:
            if token != self.token:
                self.token, self.client = token, Client(self.options.url, token, timeout=self.options.timeout)

    def made(self, session_id: str) -> None:
        with self._lock:
            if self.lasting and session_id not in self.created:
                self.created.append(session_id)
            self.current = session_id

    def used(self, session_id: str) -> None:
        self.current = session_id

    def forget(self, session_id: str) -> None:
        with self._lock:
            if session_id in self.created:
                self.created.remove(session_id)
            if self.current == session_id:
                self.current = None

    def session_id(self, given: str | None) -> str:
        """The session a tool acts on: the one named, else this connection's current one."""
        chosen = (given or "").strip() or self.current
        if not chosen:
            raise ToolError("No session: create one with create_session (or name one from list_sessions "
                            "with session_id).")
        self.used(chosen)
        return chosen


class Hub:
    """The server's state across connections: the links, and the background
    work their ends leave (ending or suspending sessions), which the server's
    lifespan waits for before the process goes."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._stdio = Link(options, options.token, lasting=True) if options.stdio and options.token else None
        self._live: set[Link] = set()
        self._tasks: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """The server's lifespan: per connection over stdio, per process over HTTP."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                yield self
            finally:
                # Stdio: the client went (stdin closed, or a signal). HTTP: the server
                # stops; the SDK closed each connection first, and any it did not are ended here.
                with anyio.CancelScope(shield=True):
                    links = ([self._stdio] if self._stdio else []) + list(self._live)
                    async with anyio.create_task_group() as ending:
                        for link in links:
                            ending.start_soon(self.disconnected, link)
                self._tasks = None

    @asynccontextmanager
    async def link(self, ctx: Context | None) -> AsyncIterator[Link]:
        """The link of the connection a request came on (see the module's docstring)."""
        if self._stdio is not None:
            yield self._stdio
            return
        token = bearer_token(ctx)
        connection = sdk_connection(ctx)
        if connection is None or connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
            transient = Link(self.options, token, lasting=False)       # no connection: this request alone
            try:
                yield transient
            finally:
                transient.client.http.close()
            return
        link = connection.state.get(_LINK)
        if link is None:
            link = connection.state[_LINK] = Link(self.options, token, lasting=True)
            self._live.add(link)
            # The SDK's per-connection teardown (bounded and shielded): the work
            # is handed to the lifespan's task group, so a slow suspend is not cut short.
            connection.exit_stack.push_async_callback(self._closed, link)
        else:
            link.use(token)
        yield link

    async def _closed(self, link: Link) -> None:
        if self._tasks is not None:
            self._tasks.start_soon(self.disconnected, link)
        else:
            await self.disconnected(link)

    async def disconnected(self, link: Link) -> None:
        """A connection went: end, suspend or keep the sessions it created."""
        if link.gone:
            return
        link.gone = True
        self._live.discard(link)
        action, sessions = self.options.on_disconnect, list(link.created)
        if sessions and action != "keep":
            # In parallel: a stdio client waits only a few seconds before it kills the
            # process, and a request the service has received is carried out anyway.
            async with anyio.create_task_group() as group:
                for session_id in sessions:
                    group.start_soon(self._leave, link.client, session_id, action)
        elif sessions:
            log.info("client gone: keeping its sessions %s", ", ".join(sessions))
        link.client.http.close()

    @staticmethod
    async def _leave(client: Client, session_id: str, action: str) -> None:
        try:
            if action == "suspend":
                await anyio.to_thread.run_sync(client.suspend, session_id)
            else:
                await anyio.to_thread.run_sync(client.delete, session_id)
            log.info("client gone: session %s %s", session_id, "suspended" if action == "suspend" else "ended")
        except (ApiError, requests.RequestException) as err:
            # Not ours to force: the service's idle timeout still ends or suspends it.
            log.warning("client gone: could not %s session %s: %s", action, session_id, err)


def bearer_token(ctx: Context | None) -> str:
    """The token the request was authenticated with (over HTTP the SDK's bearer
    middleware checked it with the service before any tool runs)."""
    access = get_access_token()
    if access is not None:
        return access.token
    headers = ctx.headers if ctx is not None else None
    value = (headers or {}).get("authorization", "")
    if value[:7].lower() == "bearer " and value[7:].strip():
        return value[7:].strip()
    raise ToolError("This request carries no bearer token.")


def sdk_connection(ctx: Context | None) -> Connection | None:
    """The SDK's Connection of the request: its per-connection `state` and
    `exit_stack` are the SDK's documented place for per-connection data and
    teardown, but 2.3 hands tools no public path to it yet (its own
    `mcp.server.context.Context.connection` is not built by the runner), so it
    is read off the request's session. None if that ever changes (then every
    request is treated as connectionless: its sessions are kept)."""
    if ctx is None:
        return None
    try:
        connection = getattr(ctx.request_context.session, "_connection", None)
    except ValueError:          # no request
        return None
    return connection if isinstance(connection, Connection) else None


async def in_thread(call: Callable[..., T], *args: Any, cancellable: bool = True, **kwargs: Any) -> T:
    """A (blocking) API call off the event loop. `cancellable`: a cancelled
    request does not wait for it (reads); otherwise it completes first (writes
    whose outcome must be known, like the id of a command just started)."""
    return await anyio.to_thread.run_sync(lambda: call(*args, **kwargs), abandon_on_cancel=cancellable)


class ServiceTokens:
    """The HTTP transport's TokenVerifier: a bearer token is good if the service
    says whose it is (GET /api/me); MCP sessions are bound to that user."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    async def verify_token(self, token: str) -> AccessToken | None:
        def ask() -> dict[str, Any] | None:
            reply = requests.get(self.url + "/api/me", headers={"Authorization": "Bearer " + token},
                                 timeout=self.timeout)
            if reply.status_code in (401, 403):
                return None
            reply.raise_for_status()
            return reply.json()
        try:
            me = await anyio.to_thread.run_sync(ask)
        except requests.RequestException as err:
            log.warning("the service at %s did not answer who a token is: %s", self.url, err)
            return None
        if not me or not me.get("user"):
            return None
        return AccessToken(token=token, client_id=me["user"], subject=me["user"], scopes=[])


class SessionsServer(MCPServer[Hub]):
    """MCPServer whose resource list also names each live session's log (the
    log is a resource template; a listing shows the caller's sessions)."""

    hub: Hub

    async def list_resources(self) -> list[MCPResource]:
        listed = await super().list_resources()
        try:
            async with self.hub.link(None) as link:
                sessions = await in_thread(link.client.list, status=LIVE, limit=50)
        except (ToolError, ApiError, requests.RequestException) as err:
            log.info("resources/list without the caller's sessions: %s", err)
            return listed
        for session in sessions:
            label = " (%s)" % session["label"] if session.get("label") else ""
            listed.append(MCPResource(uri="cxs://sessions/%s/log" % session["id"], name="log-%s" % session["id"],
                                      title="ChimeraX log of session %s%s" % (session["id"][:8], label),
                                      description="The latest commands of the session and what ChimeraX logged "
                                                  "for each", mime_type="text/plain"))
        return listed


async def handshake_only(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Over HTTP, `server/discover` is refused so that clients negotiating
    (the SDK's `auto`) fall back to the initialize handshake, whose MCP session
    is a connection with an end: what ends the sessions it created."""
    if ctx.method == "server/discover":
        raise MCPError(code=METHOD_NOT_FOUND, message="Method not found", data=ctx.method)
    return await call_next(ctx)


INSTRUCTIONS = """\
UCSF ChimeraX, run by a shared service: each session is a headless ChimeraX of your own. Create one with \
create_session (optionally opening a structure), then run ChimeraX commands with run_command and look at \
the result with snapshot (an image comes back). Tools act on the session you created or used last unless \
given session_id. The service's command policy applies: a refused command comes back as an error naming \
why (for example runscript, shell or files outside the session are never allowed to viewers); read it \
and use another command. ChimeraX sees only the session's own folder (list_files, read_file)"""
FILES_HERE = "; files of this computer go there with upload_file or create_session's file."
FILES_NONE = "; this server reads no files of your computer."


def build_server(options: Options) -> SessionsServer:
    """The MCP server with its tools and resources, for one transport."""
    from .tools import register
    hub = Hub(options)
    auth: dict[str, Any] = {}
    if not options.stdio:
        # The service issues the tokens; no OAuth endpoints are served (resource_server_url None).
        auth = {"token_verifier": ServiceTokens(options.url, options.timeout),
                "auth": AuthSettings(issuer_url=AnyHttpUrl(options.url), resource_server_url=None)}
    server = SessionsServer("chimerax-sessions", title="ChimeraX sessions", version=_version(),
                            instructions=INSTRUCTIONS + (FILES_HERE if options.stdio else FILES_NONE),
                            lifespan=lambda _server: hub.running(),
                            log_level="WARNING", **auth)
    server.hub = hub
    if not options.stdio:
        server.middleware.append(handshake_only)
    register(server, hub, options)
    return server


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("chimerax-sessions")
    except Exception:           # not installed as a distribution: still a server
        return "0"


def serve(options: Options) -> int:
    """Run the server until its client goes (stdio) or it is stopped (HTTP)."""
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("CXS_MCP_LOG_LEVEL", "WARNING"),
                        format="cxs mcp: %(levelname)s %(name)s: %(message)s")
    server = build_server(options)
    if options.stdio:
        anyio.run(_serve_stdio, server)
        return 0
    return _serve_http(server, options)


async def _serve_stdio(server: SessionsServer) -> None:
    # A client that stops us with a signal instead of closing stdin (or a terminal's
    # Ctrl-C) still gets its sessions ended: the signal ends the serving loop, whose
    # lifespan then ends them, with later signals ignored meanwhile.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with anyio.create_task_group() as watch:
            with anyio.CancelScope() as serving:
                async def stop_on_signal() -> None:
                    async for _ in signals:
                        serving.cancel()
                watch.start_soon(stop_on_signal)
                await server.run_stdio_async()
            watch.cancel_scope.cancel()


def _serve_http(server: SessionsServer, options: Options) -> int:
    import uvicorn
    assert options.listen is not None
    host, port = options.listen
    if host not in LOOPBACK:
        log.warning("serving MCP on %s, beyond loopback: put TLS in front of it (docs/mcp.md)", host)
    security = None
    if options.allowed_hosts:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"] + [h if ":" in h else h + ":*" for h in options.allowed_hosts]
        hosts += [h for h in options.allowed_hosts if ":" not in h]        # a Host header without a port
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
        origins += ["%s://%s" % (scheme, h) for h in options.allowed_hosts for scheme in ("http", "https")]
        security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                             allowed_origins=origins)
    app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level=os.environ.get("CXS_MCP_LOG_LEVEL", "warning").lower(),
                            lifespan="on", timeout_graceful_shutdown=30)
    uvicorn.Server(config).run()
    return 0
