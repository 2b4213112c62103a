"""The MCP tools and resources of `cxs mcp`: each one call (or a few) of the
service's API with the calling connection's token, its result shaped for an
assistant (text it can read, images inline, bounded sizes), and every refusal
of the service a tool error that says why, so the assistant can correct itself.

Names and arguments follow RBVI's own ChimeraX MCP bundle where the meaning is
the same (run_command/command, list_models, get_model_info, get_chain_info,
list_chimerax_commands, get_command_documentation, get_atomspec_guide, and
`session_id` naming the session), so prompts written for it carry over.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
import time
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import (
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import Field
import requests

from ..client import Client
from ..errors import ApiError, Conflict
from .server import LIVE, Hub, Link, Options, in_thread

SessionId = Annotated[str | None, Field(
    description="The session (an id from list_sessions or create_session); default: the session this "
                "connection created or used last")]
Label = Annotated[str | None, Field(description="A label for the session (up to 100 characters)")]
DatabaseId = Annotated[str | None, Field(
    description="A structure to fetch and open, e.g. 4hhb, pdb:4hhb, alphafold:P69905, emdb:1080 "
                "(the service may not allow fetching: the error says so)")]
IdleTimeout = Annotated[int | None, Field(
    description="Seconds without commands after which the service suspends the session (within the "
                "service's bounds)")]
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

# Kinds of workspace files, by suffix (the files API takes structures, maps and images).
TEXT_SUFFIXES = (".pdb", ".ent", ".pdb1", ".cif", ".mmcif", ".sdf", ".mol2", ".cxc", ".txt", ".dx")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# Local files an assistant may send to the service (stdio only): what a session takes
# (app/services/sessions/workspace.py), by the local file's own suffix, which an upload's
# name keeps. A prompt injected into a structure cannot have ~/.ssh/id_rsa sent as key.pdb.
LOCAL_SUFFIXES = (".bmp", ".ccp4", ".cif", ".dx", ".ent", ".jpeg", ".jpg", ".map", ".mmcif", ".mol2", ".mrc",
                  ".pdb", ".pdb1", ".png", ".sdf", ".tif", ".tiff")
# What `open ID` may name: a database id, with an optional source prefix (pdb:, alphafold:, emdb: ...).
DATABASE_ID = re.compile(r"^(?:[a-z][a-z0-9_]{0,20}:)?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MODEL_ID = re.compile(r"^#?\d{1,6}(?:\.\d{1,6}){0,4}$")
CHAIN_ID = re.compile(r"^[A-Za-z0-9]{1,4}$")
COMMAND_NAME = re.compile(r"^~?[A-Za-z0-9][A-Za-z0-9_-]{0,40}(?: [A-Za-z0-9][A-Za-z0-9_-]{0,40}){0,3}$")
RESUME_WAIT = 120.0         # s a command waits for its suspended session to come back
PROGRESS_EVERY = 1.0        # s between progress notifications of a running command
LOG_COMMANDS = 20           # commands shown by a session's log resource


# Turning the service's answers into what an assistant reads


def describe(err: ApiError) -> str:
    """An API error as the assistant should read it: the service's reason, its
    code, and what to do about it where that is clear."""
    hint = {
        "command_denied": "The service's command policy refused it; nothing of the line ran. Use another "
                          "command (get_command_documentation shows what a command takes).",
        "session_busy": "One command at a time: wait for it, or stop it with interrupt.",
        "session_deleted": "That session has ended: list_sessions shows yours, create_session makes one.",
        "not_found": "No such session of yours: list_sessions shows yours.",
        "session_not_active": "list_sessions shows its state.",
        "user_session_limit": "End one you no longer need with end_session.",
        "capacity_exhausted": "The service is full; try again shortly.",
        "file_not_found": "list_files shows the session's files.",
        "forbidden": "That is another user's session.",
    }.get(err.code or "", "")
    reason = "Refused by the service's command policy: %s" % err.message if err.code == "command_denied" \
        else str(err.message)
    return "%s (%s)%s" % (reason, err.code, " " + hint if hint else "")


def refused(err: ApiError) -> ToolError:
    return ToolError(describe(err))


def unreachable(options: Options, err: requests.RequestException) -> ToolError:
    return ToolError("The ChimeraX service at %s did not answer: %s" % (options.url, err))


def log_text(log: dict[str, Any] | None) -> str:
    """ChimeraX's log messages of a reply, a line each; levels other than note prefixed."""
    lines = []
    for level in ("note", "warning", "error", "bug"):
        for message in (log or {}).get(level) or []:
            message = str(message).rstrip("\n")
            lines.append(message if level == "note" else "%s: %s" % (level, message))
    return "\n".join(lines)


def json_values(values: list[Any] | None) -> list[Any]:
    """The reply's JSON values, decoded where ChimeraX gave them as JSON text."""
    decoded = []
    for value in values or []:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        decoded.append(value)
    return decoded


def bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + "\n[... %d more characters not shown]" % (len(text) - limit)


def result(text: str, structured: dict[str, Any] | None = None, error: bool = False,
           extra: list[ContentBlock] | None = None) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    return CallToolResult(content=content + (extra or []), structured_content=structured, is_error=error)


# Commands: started in the background, followed, interrupted when the call is cancelled


async def start(ctx: Context, client: Client, session_id: str, command: str) -> dict[str, Any]:
    """Start a command (wait false) and return its resource; a suspended session is
    resumed first (by the service on use, or here when it does not auto-resume)."""
    deadline = time.monotonic() + RESUME_WAIT
    resumed = False
    while True:
        try:
            # Not cancellable half-way: the command's id is what an interrupt needs.
            with anyio.CancelScope(shield=True):
                return await in_thread(client.run, session_id, command, wait=False, cancellable=False)
        except Conflict as err:
            if time.monotonic() > deadline:
                raise
            if err.code == "session_resuming":
                await ctx.report_progress(0, None, "the session was suspended and is being resumed")
                await anyio.sleep(min(err.retry_after or 1.0, 5.0))
            elif err.code == "session_not_active" and not resumed:
                session = await in_thread(client.get, session_id)
                if session.get("status") != "suspended":
                    raise
                await ctx.report_progress(0, None, "resuming the suspended session")
                await in_thread(client.resume, session_id, wait=True, cancellable=False)
                resumed = True
            else:
                raise


class LogTail:
    """The latest line ChimeraX logged for one running command, read from the
    session's event stream on a thread of its own, for progress messages. Best
    effort: without a stream (EVENT_STREAMS_PER_USER reached) there are no lines."""

    def __init__(self, client: Client, session_id: str, command_id: str) -> None:
        self.client, self.session_id, self.command_id = client, session_id, command_id
        self.line: str | None = None
        self._stream: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="cxs-mcp-log-%s" % command_id[:8])
        self._thread.start()

    def _read(self) -> None:
        try:
            self._stream = stream = self.client.events(self.session_id)
            if self._closed:            # closed while it opened
                stream.close()
                return
            ours = False
            with stream:
                for event in stream:
                    data = event["data"] if isinstance(event["data"], dict) else {}
                    if event["event"] == "command.started":
                        ours = data.get("id") == self.command_id        # the lines after it are its
                    elif event["event"] == "command.ended" and data.get("id") == self.command_id:
                        return
                    elif event["event"] == "log" and ours and str(data.get("text", "")).strip():
                        self.line = str(data["text"]).strip().splitlines()[-1][:200]
        except (ApiError, requests.RequestException, OSError, ValueError):
            return

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.close()        # wakes the thread's blocked read
        self._thread.join(5)


def wants_progress(ctx: Context) -> bool:
    """Whether the caller gave a progress token (without one, progress is not sent)."""
    meta: Any = ctx.request_context.meta or {}
    return bool(meta.get("progress_token") or meta.get("progressToken"))


async def execute(ctx: Context, link: Link, session_id: str, command: str) -> dict[str, Any]:
    """Run a command line to its end and return its resource (status, log,
    error...). While it runs the client gets progress notifications (with the
    last line it logged); if the client cancels the call, the command is
    interrupted (as Ctrl-C would)."""
    client = link.client
    started = await start(ctx, client, session_id, command)
    command_id, began = started["id"], time.monotonic()
    interval, reported = 0.02, 0.0
    tail: LogTail | None = None
    try:
        await anyio.lowlevel.checkpoint()       # a cancellation that came during the start
        while True:
            state = await in_thread(client.command, session_id, command_id)
            if state["status"] != "running":
                return state
            elapsed = time.monotonic() - began
            if tail is None and elapsed >= PROGRESS_EVERY and wants_progress(ctx):
                tail = LogTail(client, session_id, command_id)       # a long one: its lines are worth a stream
            if elapsed - reported >= PROGRESS_EVERY or not reported:
                reported = elapsed
                line = tail.line if tail is not None else None
                await ctx.report_progress(round(elapsed, 1), None, "%r has run for %.0f s (command %s)%s" % (
                    command[:80], elapsed, command_id, ": " + line if line else ""))
            await anyio.sleep(interval)
            interval = min(interval * 1.5, 1.0)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            try:
                await in_thread(client.interrupt, session_id, command_id, cancellable=False)
            except (ApiError, requests.RequestException):
                pass            # it ended meanwhile (not_running), or the session did
        raise
    finally:
        if tail is not None:
            with anyio.CancelScope(shield=True):
                await in_thread(tail.close, cancellable=False)


def outcome(session_id: str, state: dict[str, Any], limit: int) -> tuple[str, dict[str, Any]]:
    """A command's end as text (ChimeraX's log, and its error when not ok) and
    as structured content; a refusal of the policy raises a tool error naming the reason."""
    error = state.get("error") or {}
    if state.get("verdict") == "deny":
        raise ToolError("Refused by the service's command policy: %s (command_denied). Nothing of the line ran; "
                        "use another command (get_command_documentation shows what a command takes)."
                        % error.get("message", "not allowed"))
    values = [v for v in json_values(state.get("json_values")) if v is not None]
    text = log_text(state.get("log"))
    if not text and values:
        text = "\n".join(json.dumps(v) for v in values)
    ok = state["status"] == "done"
    if state["status"] == "interrupted":
        text += "\n[interrupted]"
    elif not ok:
        text += "\nChimeraX error (%s): %s" % (error.get("type", "Error"), error.get("message", ""))
    text = bounded(text.strip() or "(done; ChimeraX logged nothing)", limit)
    return text, {"session_id": session_id, "command_id": state.get("id"), "command": state.get("command"),
                  "status": state["status"], "ok": ok, "log": text, "error": error or None,
                  "json_values": values, "duration_ms": state.get("duration_ms")}


def command_result(session_id: str, state: dict[str, Any], limit: int) -> CallToolResult:
    """A command's end as a tool result: ChimeraX's log as text, `ok`, and
    ChimeraX's error when not ok (an error result)."""
    text, structured = outcome(session_id, state, limit)
    return result(text, structured, error=not structured["ok"])


async def session_log(client: Client, session_id: str) -> str:
    """A session's latest commands and what ChimeraX logged for each (the service
    keeps the log of commands run in the background, as every tool here runs them)."""
    total = (await in_thread(client.commands, session_id, 0, 1))["total"]
    page = await in_thread(client.commands, session_id, max(0, total - LOG_COMMANDS), LOG_COMMANDS)
    lines = ["# ChimeraX log of session %s: the last %d of %d commands" % (session_id, len(page["commands"]), total)]
    for entry in page["commands"]:
        lines.append("> %s" % entry["command"])
        if entry.get("verdict") == "deny":
            lines.append("[refused by the command policy]")
            continue
        if entry.get("status") == "running":
            lines.append("[running]")
            continue
        state = await in_thread(client.command, session_id, entry["id"]) if entry.get("id") else {}
        if "log" in state:
            text = log_text(state.get("log"))
            if text:
                lines.append(text)
            if state.get("error"):
                lines.append("error: %s" % (state["error"] or {}).get("message", ""))
        else:
            lines.append("[%s; its log went to the caller that waited for it]" % (entry.get("status") or "done"))
    return "\n".join(lines) + "\n"


def summarise(session: dict[str, Any], link: Link) -> dict[str, Any]:
    shown = {k: session.get(k) for k in ("id", "label", "status", "created_at", "last_activity", "expires_at")}
    if session.get("owner") and session.get("owner") != session.get("user"):
        shown["owner"] = session.get("owner")
    for key in ("access", "user", "end_reason"):
        if session.get(key):
            shown[key] = session[key]
    shown["current"] = session.get("id") == link.current
    shown["created_here"] = session.get("id") in link.created
    return shown


def model_lines(model: dict[str, Any]) -> list[str]:
    """One model of `info`'s JSON as RBVI's list_models shows it."""
    line = "%s, %s, %s" % (model.get("spec", "#?"), model.get("name", "unnamed"),
                           "shown" if model.get("shown") else "hidden")
    if model.get("num triangles"):
        line += ", %d triangles" % model["num triangles"]
    lines = [line]
    atoms = model.get("num atoms")
    if atoms:
        details = ["%d atoms" % atoms]
        bonds = model.get("num bonds", model.get("num_bonds"))
        if bonds is not None:
            details.append("%d bonds" % bonds)
        if model.get("num residues") is not None:
            details.append("%d residues" % model["num residues"])
        chains = [c.strip() or "(blank)" for c in model.get("chains") or []]
        if chains:
            details.append("%d chains (%s)" % (len(chains), ",".join(chains)))
        lines.append("  " + ", ".join(details))
    if model.get("size") is not None:
        lines.append("  volume size %s, step %s, levels %s" % (
            ",".join(map(str, model["size"])), model.get("step"), model.get("surface levels")))
    return lines


def chain_line(chain: dict[str, Any]) -> str:
    """One chain of `info chains`' JSON (with the description asked for as its attribute)."""
    spec = chain.get("spec", "?")
    described = chain.get("value") if chain.get("attribute") == "description" else None
    return ("Chain %s | Type = %s | Description = %s | Number of residues = %d | Residues with atomic coordinates "
            "= %d" % (spec, chain.get("polymer type", "?"), described or "none", len(chain.get("sequence") or ""),
                      len(chain.get("residues") or [])))


ATOMSPEC_GUIDE = """\
# Naming things in ChimeraX commands (atom specifications)

Hierarchy, each level optional, from the top: #model /chain :residue @atom
- `#1` model 1; `#1.2` submodel 2 of model 1; `#1-3` models 1 to 3; `#1,4` models 1 and 4
- `/A` chain A; `/A,B` chains A and B; `#1/A` chain A of model 1
- `:12` residue 12; `:12-20` residues 12 to 20; `:HEM` residues named HEM; `/A:12-20` in chain A
- `@CA` atoms named CA; `@CA,CB`; `:12@N` atom N of residue 12; `@@element=Fe` by attribute
Words standing for sets: `protein` `nucleic` `ligand` `ion` `solvent` `water` `helix` `strand` `coil`
`backbone` `sidechain` `sel` (the current selection) and element symbols (`C`, `Fe`).
Combine with `&` (and), `|` (or), `~` (not): `protein & ~/B`, `ligand | ion`.
Zones: `ligand :<5` residues within 5 A of the ligand; `ligand @<4.5` atoms within 4.5 A;
`:HEM :<6 & protein` protein residues near the heme.
Attributes: `::name="ALA"`, `@@bfactor>50`, `::num_atoms>10`.
Examples: `color /A cornflowerblue`, `show ligand :<5 atoms`, `style ligand stick`,
`cartoon #1`, `surface #1 & protein`, `view /A:45`, `hide solvent atoms`.
"""


def register(server: MCPServer[Any], hub: Hub, options: Options) -> None:
    """The tools and resources, bound to this server's hub (local files only over stdio)."""

    async def run_line(ctx: Context, link: Link, session_id: str, command: str) -> dict[str, Any]:
        try:
            return await execute(ctx, link, session_id, command)
        except ApiError as err:
            raise refused(err) from None
        except requests.RequestException as err:
            raise unreachable(options, err) from None

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await in_thread(fn, *args, **kwargs)
        except ApiError as err:
            raise refused(err) from None
        except requests.RequestException as err:
            raise unreachable(options, err) from None

    async def quiet(ctx: Context, link: Link, session_id: str, command: str) -> dict[str, Any]:
        """A command a tool runs for information: its failure is the tool's error."""
        state = await run_line(ctx, link, session_id, command)
        if state.get("verdict") == "deny" or state["status"] != "done":
            outcome(session_id, state, options.max_text_chars)        # raises a refusal as such
            raise ToolError("%r failed: %s" % (command, (state.get("error") or {}).get("message", state["status"])))
        return state

    @server.tool(annotations=READ_ONLY)
    async def list_sessions(ctx: Context) -> CallToolResult:
        """List your live ChimeraX sessions (starting, active, suspended), newest first, with which one
        tools act on by default ("current") and which this connection created."""
        async with hub.link(ctx) as link:
            sessions = await call(link.client.list, status=LIVE, limit=100)
            shown = [summarise(s, link) for s in sessions]
        if not shown:
            return result("You have no live sessions: create one with create_session.", {"sessions": []})
        lines = ["%s %s%s%s%s" % (s["id"], s["status"], " '%s'" % s["label"] if s.get("label") else "",
                                  " (current)" if s["current"] else "",
                                  " (shared by %s, %s)" % (s["owner"], s.get("access")) if s.get("owner") else "")
                 for s in shown]
        return result("\n".join(lines), {"sessions": shown})

    async def create(ctx: Context, label: str | None, database_id: str | None, file: str | None,
                     idle_timeout: int | None) -> CallToolResult:
        if file and database_id:
            raise ToolError("Give either file or database_id, not both.")
        if database_id is not None and not DATABASE_ID.match(database_id.strip()):
            raise ToolError("database_id should be an id such as 4hhb, pdb:4hhb or alphafold:P69905.")
        if file:
            file = local_file(file)
        async with hub.link(ctx) as link:
            # Not cancellable half-way: a session made is one this connection must know, to end it.
            with anyio.CancelScope(shield=True):
                session = await call(link.client.create, label=label, idle_timeout=idle_timeout, file=file,
                                     cancellable=False)
            link.made(session["id"])
            text = "Created session %s (%s)%s." % (session["id"], session["status"],
                                                   ", opened %s" % os.path.basename(file) if file else "")
            if database_id:
                state = await run_line(ctx, link, session["id"], "open %s" % database_id.strip())
                if state["status"] != "done":
                    # As a create with an unreadable file: nothing is left running.
                    try:
                        await in_thread(link.client.delete, session["id"], cancellable=False)
                    finally:
                        link.forget(session["id"])
                    try:
                        failure, _ = outcome(session["id"], state, options.max_text_chars)
                    except ToolError as err:
                        raise ToolError("%s The new session was ended." % err) from None
                    raise ToolError("Opening %s failed, so the new session was ended: %s" % (database_id, failure))
                text += "\nopen %s:\n%s" % (database_id, log_text(state.get("log")) or "(nothing logged)")
        return result(text, {"session": {k: session.get(k) for k in ("id", "label", "status", "created_at",
                                                                        "expires_at")}})

    if options.stdio:
        @server.tool(name="create_session", annotations=CHANGES)
        async def create_session_here(ctx: Context, label: Label = None, database_id: DatabaseId = None,
                                      file: Annotated[str | None, Field(
                                          description="A structure or map file on this computer to upload "
                                                      "and open (.pdb .cif .mrc .map ...)")] = None,
                                      idle_timeout: IdleTimeout = None) -> CallToolResult:
            """Start a new ChimeraX session of your own (a headless ChimeraX run by the service) and make
            it the current one; optionally open a local file or fetch a structure by database id. The
            session ends when this client disconnects unless the server was told to keep it."""
            return await create(ctx, label, database_id, file, idle_timeout)
    else:
        @server.tool(name="create_session", annotations=CHANGES)
        async def create_session_remote(ctx: Context, label: Label = None, database_id: DatabaseId = None,
                                        idle_timeout: IdleTimeout = None) -> CallToolResult:
            """Start a new ChimeraX session of your own (a headless ChimeraX run by the service) and make
            it the current one; optionally fetch and open a structure by database id. The session ends
            when this client disconnects unless the server was told to keep it."""
            return await create(ctx, label, database_id, None, idle_timeout)

    @server.tool(annotations=CHANGES)
    async def run_command(ctx: Context, command: Annotated[str, Field(
            description="A ChimeraX command line, e.g. 'open 4hhb', 'cartoon', 'color /A red', "
                        "'show ligand :<5 atoms; view ligand'")],
                          session_id: SessionId = None) -> CallToolResult:
        """Run a ChimeraX command line in a session and return what ChimeraX logged, whether it
        succeeded (ok) and ChimeraX's error when not. Long commands report progress; cancelling the call
        interrupts the command (the session keeps its models). Commands the service's policy refuses come
        back as an error naming the reason."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            state = await run_line(ctx, link, sid, command)
        return command_result(sid, state, options.max_text_chars)

    @server.tool(annotations=READ_ONLY)
    async def snapshot(ctx: Context, session_id: SessionId = None,
                       width: Annotated[int, Field(ge=16, le=2048, description="Image width in pixels")] = 800,
                       height: Annotated[int, Field(ge=16, le=2048, description="Image height in pixels")] = 600,
                       supersample: Annotated[int, Field(ge=1, le=4, description="Supersampling (smoother "
                                                                                "edges, slower)")] = 3,
                       ) -> CallToolResult:
        """Render the session's current view as a PNG image and return it inline."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            png = await call(link.client.snapshot, sid, width, height, supersample)
            if len(png) > options.max_image_bytes:
                # Smaller by the area's ratio, once: an image the client can take beats an error.
                scale = math.sqrt(options.max_image_bytes / len(png)) * 0.9
                width, height = max(16, int(width * scale)), max(16, int(height * scale))
                png = await call(link.client.snapshot, sid, width, height, supersample)
                if len(png) > options.max_image_bytes:
                    raise ToolError("The image is %d bytes, over this server's bound of %d: ask for a smaller one."
                                    % (len(png), options.max_image_bytes))
        image = ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png")
        return result("%dx%d PNG of session %s (%d bytes)" % (width, height, sid, len(png)),
                      {"session_id": sid, "width": width, "height": height, "bytes": len(png)}, extra=[image])

    @server.tool(annotations=READ_ONLY)
    async def scene(ctx: Context, session_id: SessionId = None,
                    size: Annotated[float | None, Field(gt=0, le=1e6, description="Scale the scene to this size "
                                                                                 "(its largest extent)")] = None,
                    flat_lighting: Annotated[bool, Field(description="Bake no lighting (for viewers that light "
                                                                     "the scene themselves)")] = False,
                    embed: Annotated[bool, Field(description="Return the glTF inline (false: a link to read "
                                                             "as a resource)")] = True) -> CallToolResult:
        """Export the session's 3D scene as binary glTF (.glb, for three.js, <model-viewer>, Blender):
        inline as an embedded resource when small enough, else as a link to the resource
        cxs://sessions/<id>/scene.glb."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            uri = "cxs://sessions/%s/scene.glb" % sid
            if not embed:
                return result("The scene of session %s: read the resource %s." % (sid, uri), {"uri": uri},
                              extra=[ResourceLink(type="resource_link", uri=uri, name="scene-%s.glb" % sid,
                                                  mime_type="model/gltf-binary")])
            options_given: dict[str, Any] = {"flat_lighting": flat_lighting}
            if size is not None:
                options_given["size"] = size
            data = await call(link.client.scene, sid, **options_given)
        if len(data) > options.max_scene_bytes:
            return result("The scene is %d bytes, over this server's bound of %d for inline results: read the "
                          "resource %s instead." % (len(data), options.max_scene_bytes, uri),
                          {"uri": uri, "bytes": len(data)},
                          extra=[ResourceLink(type="resource_link", uri=uri, name="scene-%s.glb" % sid,
                                              mime_type="model/gltf-binary", size=len(data))])
        blob = BlobResourceContents(uri=uri, blob=base64.b64encode(data).decode("ascii"),
                                    mime_type="model/gltf-binary")
        return result("Binary glTF of session %s (%d bytes)." % (sid, len(data)), {"uri": uri, "bytes": len(data)},
                      extra=[EmbeddedResource(type="resource", resource=blob)])

    @server.tool(annotations=READ_ONLY)
    async def list_files(ctx: Context, session_id: SessionId = None) -> CallToolResult:
        """List the files in the session's folder (structures opened or saved, images...): name and size."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            files = await call(link.client.files, sid)
        text = "\n".join("%s  %d bytes" % (f["name"], f["size"]) for f in files) or "(no files)"
        return result(text, {"session_id": sid, "files": files})

    @server.tool(annotations=READ_ONLY)
    async def read_file(ctx: Context, name: Annotated[str, Field(description="A file name from list_files")],
                        session_id: SessionId = None,
                        max_bytes: Annotated[int | None, Field(ge=1, description="Read at most this many bytes "
                                                                                   "(text files are cut there)")]
                        = None) -> CallToolResult:
        """Read a file of the session's folder: structure files as text (cut at a bound), images inline,
        other files as an embedded resource when small enough."""
        limit = min(max_bytes or options.max_file_bytes, options.max_file_bytes)
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            files = {f["name"]: f for f in await call(link.client.files, sid)}
            if name not in files:
                raise ToolError("Session %s has no file %r: list_files shows its files." % (sid, name))
            size = files[name]["size"]
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_TYPES:
                if size > options.max_image_bytes:
                    raise ToolError("%s is %d bytes, over this server's bound of %d for images."
                                    % (name, size, options.max_image_bytes))
                data = await call(download, link.client, sid, name, size)
                image = ImageContent(type="image", data=base64.b64encode(data).decode("ascii"),
                                     mime_type=IMAGE_TYPES[suffix])
                return result("%s (%d bytes)" % (name, size), {"name": name, "bytes": size}, extra=[image])
            if suffix not in TEXT_SUFFIXES and size > limit:
                raise ToolError("%s is %d bytes, over this server's bound of %d for a file read whole."
                                % (name, size, limit))
            data = await call(download, link.client, sid, name, limit)
        uri = "cxs://sessions/%s/files/%s" % (sid, name)
        if suffix in TEXT_SUFFIXES:
            text = data.decode("utf-8", errors="replace")
            cut = size > len(data)
            if cut:
                text += "\n[... cut at %d of %d bytes]" % (len(data), size)
            return result(text, {"name": name, "bytes": size, "returned_bytes": len(data), "truncated": cut})
        blob = BlobResourceContents(uri=uri, blob=base64.b64encode(data).decode("ascii"),
                                    mime_type="application/octet-stream")
        return result("%s (%d bytes), embedded." % (name, size), {"name": name, "bytes": size},
                      extra=[EmbeddedResource(type="resource", resource=blob)])

    if options.stdio:
        @server.tool(annotations=CHANGES)
        async def upload_file(ctx: Context, path: Annotated[str, Field(
                description="A structure, map or image file on this computer")],
                              session_id: SessionId = None,
                              name: Annotated[str | None, Field(description="Its name in the session's folder "
                                                                            "(default: the file's own)")] = None,
                              ) -> CallToolResult:
            """Copy a file from this computer into the session's folder, to open it with run_command
            ('open NAME')."""
            path = local_file(path)
            if name and os.path.splitext(name)[1].lower() != os.path.splitext(path)[1].lower():
                raise ToolError("name must keep the file's own suffix (%s)." % os.path.splitext(path)[1])
            async with hub.link(ctx) as link:
                sid = link.session_id(session_id)
                stored = await call(link.client.upload, sid, path, name)
            return result("Uploaded %s to session %s as %s: open it with run_command('open %s')."
                          % (path, sid, stored.get("name", name), stored.get("name", name)), {"file": stored})

    @server.tool(annotations=READ_ONLY)
    async def history(ctx: Context, session_id: SessionId = None) -> CallToolResult:
        """The session's successful commands as a ChimeraX command script (.cxc), oldest first: replayed
        in a fresh session with the same files, it rebuilds the scene."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            script = await call(link.client.history_script, sid)
        return result(bounded(script, options.max_text_chars), {"session_id": sid})

    @server.tool(annotations=CHANGES)
    async def interrupt(ctx: Context, session_id: SessionId = None) -> CallToolResult:
        """Stop the command running in the session, as Ctrl-C would; the session keeps its models."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            try:
                stopped = await in_thread(link.client.interrupt, sid)
            except Conflict as err:
                if err.code == "not_running":
                    return result("Nothing is running in session %s." % sid, {"interrupted": None})
                raise refused(err) from None
            except ApiError as err:
                raise refused(err) from None
            except requests.RequestException as err:
                raise unreachable(options, err) from None
        if stopped.get("session") == "ended":
            return result("%r did not stop, so its session was ended." % stopped.get("command"), stopped, error=True)
        return result("Interrupted %r." % stopped.get("command"), stopped)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    async def end_session(ctx: Context, session_id: Annotated[str, Field(
            description="The session to end (an id from list_sessions)")]) -> CallToolResult:
        """End a session: its ChimeraX stops and its files are removed."""
        async with hub.link(ctx) as link:
            await call(link.client.delete, session_id.strip())
            link.forget(session_id.strip())
        return result("Session %s ended." % session_id.strip(), {"ended": session_id.strip()})

    # RBVI's names, on the service's sessions

    @server.tool(annotations=READ_ONLY)
    async def list_models(ctx: Context, session_id: SessionId = None) -> CallToolResult:
        """List the models open in the session: id (#1, #1.1), name, shown or hidden, and for atomic
        structures their atoms, bonds, residues and chains; for maps their size and levels."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            state = await quiet(ctx, link, sid, "info")
        models = next((v for v in json_values(state.get("json_values")) if isinstance(v, list)), [])
        lines = ["%d models" % len(models)] + [line for model in models for line in model_lines(model)]
        return result("\n".join(lines), {"session_id": sid, "models": models})

    @server.tool(annotations=READ_ONLY)
    async def get_model_info(ctx: Context, model_id: Annotated[str, Field(description="A model id, e.g. '#1' "
                                                                                        "or '#1.1'")],
                             session_id: SessionId = None) -> CallToolResult:
        """Details of one model, with every chain's id, type, description and residue counts."""
        if not MODEL_ID.match(model_id.strip()):
            raise ToolError("model_id should look like #1 or #1.2.")
        spec = "#" + model_id.strip().lstrip("#")
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            models = next((v for v in json_values((await quiet(ctx, link, sid, "info")).get("json_values"))
                           if isinstance(v, list)), [])
            model = next((m for m in models if m.get("spec") == spec), None)
            if model is None:
                raise ToolError("No model %s in session %s: list_models shows its models." % (spec, sid))
            chains: list[dict[str, Any]] = []
            if model.get("chains"):
                state = await quiet(ctx, link, sid, "info chains %s attribute description" % spec)
                chains = next((v for v in json_values(state.get("json_values")) if isinstance(v, list)), [])
        lines = model_lines(model) + [chain_line(c) for c in chains]
        return result("\n".join(lines), {"session_id": sid, "model": model, "chains": chains})

    @server.tool(annotations=READ_ONLY)
    async def get_chain_info(ctx: Context, model_id: Annotated[str, Field(description="A model id, e.g. '1' "
                                                                                        "or '#1'")],
                             chain_id: Annotated[str, Field(description="A chain id, e.g. 'A'")],
                             session_id: SessionId = None) -> CallToolResult:
        """One chain of a model: its type, description, number of residues and how many of them have
        atomic coordinates."""
        if not MODEL_ID.match(model_id.strip()) or not CHAIN_ID.match(chain_id.strip()):
            raise ToolError("model_id should look like #1, chain_id like A.")
        spec = "#%s/%s" % (model_id.strip().lstrip("#"), chain_id.strip())
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            state = await quiet(ctx, link, sid, "info chains %s attribute description" % spec)
        chains = next((v for v in json_values(state.get("json_values")) if isinstance(v, list)), [])
        if not chains:
            raise ToolError("No chain %s in session %s: get_model_info lists a model's chains." % (spec, sid))
        return result("\n".join(chain_line(c) for c in chains), {"session_id": sid, "chains": chains})

    @server.tool(annotations=READ_ONLY)
    async def list_chimerax_commands(ctx: Context, session_id: SessionId = None) -> CallToolResult:
        """The commands this ChimeraX knows (the service's policy may still refuse some; a refusal says so)."""
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            state = await quiet(ctx, link, sid, "usage")
        text = log_text(state.get("log"))
        found = re.search(r"The following commands are available: (.*)", text, re.S)
        commands = [c.strip() for c in found.group(1).split(",")] if found else []
        shown = ("%d commands: %s" % (len(commands), ", ".join(commands))) if commands else text
        return result(bounded(shown, options.max_text_chars), {"commands": commands})

    @server.tool(annotations=READ_ONLY)
    async def get_command_documentation(ctx: Context, command_name: Annotated[str, Field(
            description="A command's name, e.g. 'color', 'cartoon style', 'surface'")],
                                        session_id: SessionId = None) -> CallToolResult:
        """A command's usage: its arguments and keywords with their types, as ChimeraX states them."""
        if not COMMAND_NAME.match(command_name.strip()):
            raise ToolError("command_name should be a command's name such as 'color' or 'cartoon style'.")
        async with hub.link(ctx) as link:
            sid = link.session_id(session_id)
            state = await quiet(ctx, link, sid, "usage %s" % command_name.strip())
        return result(bounded(log_text(state.get("log")) or "(no usage)", options.max_text_chars),
                      {"command": command_name.strip()})

    @server.tool(annotations=READ_ONLY)
    async def get_atomspec_guide() -> str:
        """How to name models, chains, residues and atoms in ChimeraX commands (atom specifications),
        with examples. Read it before building a specification such as #1/A:12-20@CA."""
        return ATOMSPEC_GUIDE

    # Resources

    @server.resource("cxs://sessions/{session_id}/log", mime_type="text/plain",
                     description="A session's latest commands and what ChimeraX logged for each")
    async def log_resource(session_id: str, ctx: Context) -> str:
        async with hub.link(ctx) as link:
            try:
                return await session_log(link.client, session_id)
            except ApiError as err:
                raise ResourceError(describe(err)) from None

    @server.resource("cxs://sessions/{session_id}/scene.glb", mime_type="model/gltf-binary",
                     description="A session's 3D scene as binary glTF")
    async def scene_resource(session_id: str, ctx: Context) -> bytes:
        async with hub.link(ctx) as link:
            try:
                data: bytes = await in_thread(link.client.scene, session_id)
                return data
            except ApiError as err:
                raise ResourceError(describe(err)) from None


def local_file(path: str) -> str:
    """A file of this computer that a tool may send to the service (see LOCAL_SUFFIXES)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not path.lower().endswith(LOCAL_SUFFIXES):
        raise ToolError("Only structure, map and image files are sent to the service (%s)."
                        % " ".join(LOCAL_SUFFIXES))
    if not os.path.isfile(path):
        raise ToolError("No file %s on this computer." % path)
    return path


def download(client: Client, session_id: str, name: str, limit: int) -> bytes:
    """At most `limit` bytes of a workspace file, read as they stream (the
    client's `download` reads whole files, which a bound must not wait for)."""
    response = client._request("GET", "/api/sessions/%s/files/%s" % (session_id, name), stream=True)
    try:
        data: bytes = response.raw.read(limit, decode_content=True)
        return data
    finally:
        response.close()
