"""`cxs mcp` (issue 37) driven by the official MCP SDK's own client, over stdio
and over streamable HTTP, against real gunicorn with the real ChimeraX
runtime: the tools, the policy's refusals as tool errors, images, each HTTP
connection's own token, and what a disconnect does to the sessions it made."""
import base64
from contextlib import contextmanager
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import anyio
import httpx2
from mcp import Client as McpClient
from mcp import MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
import psutil
import pytest
import requests

from app.services.processes.locate import PROJECT_ROOT
from cxs_client import Client

from .conftest import alanin_pdb, free_port, wait_until
from .helpers import distinct_colours
from .test_sandbox import place, workspace

CXS = os.path.join(os.path.dirname(sys.executable), "cxs")
CXS_MCP = [CXS, "mcp"]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOC = open(os.path.join(PROJECT_ROOT, "docs", "mcp.md")).read()
EXPECTED_TOOLS = {"list_sessions", "create_session", "run_command", "snapshot", "scene", "list_files", "read_file",
                  "history", "interrupt", "end_session", "list_models", "get_model_info", "get_chain_info",
                  "list_chimerax_commands", "get_command_documentation", "get_atomspec_guide"}
# Trusted Python (an admin's runscript) that runs until stopped.
LOOP = ("import time\nfor i in range(600):\n    session.logger.info('tick %d' % i)\n"
        "    t = time.time()\n    while time.time() < t + 0.5:\n        pass\n")


@pytest.fixture
def live(gunicorn_server):
    # TOKEN_CACHE_SECONDS 0: a revoked token is refused by every worker at once.
    return gunicorn_server(workers=2, SWEEP_INTERVAL=60, ALLOW_FETCH="false", TOKEN_CACHE_SECONDS=0)


def secret(server, user, role="user"):
    return server.token(user, role)["Authorization"].split(" ", 1)[1]


def doc_blocks(language):
    return re.findall(r"```%s\n(.*?)```" % language, DOC, re.S)


def stdio(server, token, *args, **env):
    """The SDK's client, spawning `cxs mcp` over stdio as docs/mcp.md's Claude Desktop block
    says (this checkout's `cxs`, this server and token)."""
    desktop = json.loads(doc_blocks("json")[0])["mcpServers"]["chimerax"]
    values = {"CXS_URL": server.url, "CXS_TOKEN": token}
    return McpClient(StdioServerParameters(command=CXS, args=desktop["args"] + list(args),
                                           env={**{name: values[name] for name in desktop["env"]}, **env}))


@contextmanager
def http_server(server, tmp_path, *args, **env):
    """`cxs mcp --http 127.0.0.1:PORT` (no CXS_TOKEN: each connection brings its own); its /mcp URL."""
    port = free_port()
    log_path = tmp_path / ("mcp-%d.log" % port)
    with open(log_path, "wb") as log:
        # Only the port: the host defaults to loopback.
        proc = subprocess.Popen(CXS_MCP + ["--http", str(port)] + list(args), stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ, CXS_URL=server.url, **env))
        try:
            def listening():
                assert proc.poll() is None, "cxs mcp --http exited: %s" % log_path.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    return True
                except OSError:
                    return False
            wait_until(listening, 30, message="cxs mcp --http to listen")
            bound = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
            assert bound == {"127.0.0.1"}
            http_server.process = proc          # for a test that stops it itself
            yield "http://127.0.0.1:%d/mcp" % port
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def servers_spawned():
    """The `cxs mcp` processes this test started."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if " ".join(CXS_MCP) in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:        # gone meanwhile, or a zombie
            continue
    return found


def over_http(url, token, **options):
    """The SDK's client over streamable HTTP, its bearer token in every request."""
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + token}, timeout=httpx2.Timeout(30, read=300))
    return McpClient(streamable_http_client(url, http_client=http), **options)


def text(reply):
    return "\n".join(block.text for block in reply.content if block.type == "text")


def png_of(reply, tmp_path, name):
    images = [block for block in reply.content if block.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png", reply
    path = tmp_path / name
    path.write_bytes(base64.b64decode(images[0].data))
    return path


async def structure_workflow(mcp, tmp_path, tag, created):
    """What acceptance asks of either transport, once a structure is open in the current session."""
    done = await mcp.call_tool("run_command", {"command": "cartoon"})
    assert not done.is_error and done.structured_content["ok"] is True, text(done)
    shot = await mcp.call_tool("snapshot", {"width": 160, "height": 120})
    assert not shot.is_error, text(shot)
    width, height, colours = distinct_colours(png_of(shot, tmp_path, tag + ".png"))
    assert (width, height) == (160, 120) and colours > 8          # the cartoon drawn, not a blank background
    denied = await mcp.call_tool("run_command", {"command": "runscript x.py"})
    assert denied.is_error
    assert "runscript" in text(denied) and "not allowed" in text(denied) and "command_denied" in text(denied)
    wrong = await mcp.call_tool("run_command", {"command": "colr red"})
    assert wrong.is_error and wrong.structured_content["ok"] is False
    assert "ChimeraX error (UserError)" in text(wrong)
    models = await mcp.call_tool("list_models", {})
    assert not models.is_error and "#1, alanin.pdb, shown" in text(models) and "66 atoms" in text(models)
    model = await mcp.call_tool("get_model_info", {"model_id": "#1"})
    assert "Type = protein" in text(model) and "Number of residues = 12" in text(model), text(model)
    usage = await mcp.call_tool("get_command_documentation", {"command_name": "cartoon style"})
    assert "cartoon style" in text(usage) and "width" in text(usage)
    script = await mcp.call_tool("history", {})
    assert "cartoon" in text(script).splitlines() and "runscript x.py" not in text(script)
    files = await mcp.call_tool("list_files", {})
    assert "alanin.pdb" in text(files)
    head = await mcp.call_tool("read_file", {"name": "alanin.pdb", "max_bytes": 300})
    assert text(head).startswith("REMARK") and head.structured_content["truncated"] is True
    glb = await mcp.call_tool("scene", {"size": 10})
    [embedded] = [block for block in glb.content if block.type == "resource"]
    assert embedded.resource.mime_type == "model/gltf-binary"
    assert base64.b64decode(embedded.resource.blob)[:4] == b"glTF"
    sid = created[-1]
    listed = await mcp.list_resources()
    assert "cxs://sessions/%s/log" % sid in [str(r.uri) for r in listed.resources]
    log = await mcp.read_resource("cxs://sessions/%s/log" % sid)
    assert "> cartoon" in log.contents[0].text and "[refused by the command policy]" in log.contents[0].text


@pytest.mark.slow
def test_stdio_tools_policy_images_and_disconnect(live, tmp_path):
    alice = Client(live.url, secret(live, "alice"))
    created = []

    async def session():
        async with stdio(live, alice.token) as mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            assert EXPECTED_TOOLS | {"upload_file"} == set(tools)
            for tool in tools.values():             # what a model reads to call them
                assert tool.description and tool.input_schema["type"] == "object"
                for name, schema in tool.input_schema.get("properties", {}).items():
                    assert schema.get("description"), (tool.name, name)
            assert tools["run_command"].input_schema["required"] == ["command"]         # RBVI's names
            assert set(tools["get_chain_info"].input_schema["properties"]) == {"model_id", "chain_id", "session_id"}

            assert mcp.protocol_version == "2026-07-28"        # over stdio the process is the connection
            none_yet = await mcp.call_tool("run_command", {"command": "pwd"})
            assert none_yet.is_error and "create_session" in text(none_yet)
            made = await mcp.call_tool("create_session", {"file": alanin_pdb(), "label": "mcp stdio"})
            assert not made.is_error, text(made)
            created.append(made.structured_content["session"]["id"])
            assert alice.get(created[0])["status"] == "active"
            await structure_workflow(mcp, tmp_path, "stdio", created)

            # A database id is fetched with `open`: refused here (ALLOW_FETCH is off), and nothing is left.
            fetched = await mcp.call_tool("create_session", {"database_id": "4hhb"})
            assert fetched.is_error and "command_denied" in text(fetched) and "ended" in text(fetched)
            second = await mcp.call_tool("create_session", {"label": "left for the disconnect"})
            created.append(second.structured_content["session"]["id"])
            listed = await mcp.call_tool("list_sessions", {})
            assert [s["id"] for s in listed.structured_content["sessions"]] == created[::-1]
            assert listed.structured_content["sessions"][0]["current"] is True

            secret_file = tmp_path / "id_rsa"
            secret_file.write_text("not for the service")
            for args in ({"path": str(secret_file)}, {"path": alanin_pdb(), "name": "copy.txt"}):
                sent = await mcp.call_tool("upload_file", args)
                assert sent.is_error, args
            copied = await mcp.call_tool("upload_file", {"path": alanin_pdb(), "name": "copy.pdb"})
            assert not copied.is_error and "copy.pdb" in {f["name"] for f in alice.files(created[1])}

            ended = await mcp.call_tool("end_session", {"session_id": created[0]})
            assert not ended.is_error and {s["id"]: s for s in alice.list()}[created[0]]["end_reason"] == "deleted"
            gone = await mcp.call_tool("run_command", {"command": "pwd", "session_id": created[0]})
            assert gone.is_error and "session_deleted" in text(gone)
    anyio.run(session)
    # The client went (stdin closed): the session it made and left is ended.
    wait_until(lambda: {s["id"]: s["status"] for s in alice.list()}[created[1]] == "terminated", 30,
               message="the disconnected client's session to end")
    assert not alice.list(status=["starting", "active", "suspended"])


@pytest.mark.slow
def test_http_each_connection_its_own_token(live, tmp_path):
    alice, bob = Client(live.url, secret(live, "alice")), Client(live.url, secret(live, "bob"))

    async def two_clients(url):
        async with over_http(url, alice.token) as a, over_http(url, bob.token) as b:
            assert a.protocol_version == "2025-11-25"           # the handshake era: a connection with an end
            assert EXPECTED_TOOLS == {tool.name for tool in (await a.list_tools()).tools}      # no local files
            mine = (await a.call_tool("create_session", {"label": "alice's"})).structured_content["session"]["id"]
            theirs = (await b.call_tool("create_session", {"label": "bob's"})).structured_content["session"]["id"]
            seen_by_a = await a.call_tool("list_sessions", {})
            seen_by_b = await b.call_tool("list_sessions", {})
            assert [s["id"] for s in seen_by_a.structured_content["sessions"]] == [mine]
            assert [s["id"] for s in seen_by_b.structured_content["sessions"]] == [theirs]
            intrusion = await b.call_tool("run_command", {"command": "pwd", "session_id": mine})
            assert intrusion.is_error and "forbidden" in text(intrusion)
            assert [str(r.uri) for r in (await b.list_resources()).resources] == ["cxs://sessions/%s/log" % theirs]

            # Open a structure uploaded through the API, then what acceptance asks.
            alice.upload(mine, alanin_pdb())
            opened = await a.call_tool("run_command", {"command": "open alanin.pdb"})
            assert not opened.is_error and opened.structured_content["ok"], text(opened)
            await structure_workflow(a, tmp_path, "http", [mine])
            ended = await b.call_tool("end_session", {"session_id": theirs})
            assert not ended.is_error

        # Each request's own token is the one used: a connection goes on with a new token of the
        # same user (a refreshed one) after the one it was opened with is revoked.
        first = alice.create_token(note="mcp connection")
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + first["token"]}, timeout=30)
        async with McpClient(streamable_http_client(url, http_client=http)) as refreshed:
            made = await refreshed.call_tool("create_session", {"label": "made with the first token"})
            http.headers["Authorization"] = "Bearer " + alice.token
            alice.revoke_token(first["id"])
            again = await refreshed.call_tool("run_command", {"command": "version"})     # its current session
            assert not again.is_error, text(again)
            assert [s["id"] for s in (await refreshed.call_tool("list_sessions", {})).structured_content[
                "sessions"]] == [made.structured_content["session"]["id"]]
        return mine

    # An admin's token in the server's environment is never lent to a connection.
    with http_server(live, tmp_path, CXS_TOKEN=secret(live, "root", "admin")) as url:
        # A connection is held to the user that opened it, and needs a token the service knows.
        opened = requests.post(url, headers={"Authorization": "Bearer " + alice.token, "Accept":
                                             "application/json, text/event-stream"},
                               json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                                   "protocolVersion": "2025-11-25", "capabilities": {},
                                   "clientInfo": {"name": "test", "version": "1"}}}, timeout=30)
        assert opened.status_code == 200, opened.text
        mcp_session = opened.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        headers = {"Mcp-Session-Id": mcp_session, "MCP-Protocol-Version": "2025-11-25",
                   "Accept": "application/json, text/event-stream"}
        stolen = requests.post(url, headers=dict(headers, Authorization="Bearer " + bob.token), json=listing,
                               timeout=30)
        assert stolen.status_code == 404
        for credentials in ({}, {"Authorization": "Bearer not-a-token"}):
            refused = requests.post(url, headers=dict(headers, **credentials), json=listing, timeout=30)
            assert refused.status_code == 401 and "invalid_token" in refused.headers["WWW-Authenticate"]
        requests.delete(url, headers=dict(headers, Authorization="Bearer " + alice.token), timeout=30)
        rebound = requests.post(url, headers={"Authorization": "Bearer " + alice.token, "Host": "attacker.example",
                                              "Accept": "application/json, text/event-stream"},
                                json=listing, timeout=30)
        assert rebound.status_code == 421            # DNS rebinding: only loopback's names are served

        mine = anyio.run(two_clients, url)
        # Each client disconnected (the SDK's DELETE): what it made and left is ended.
        wait_until(lambda: not alice.list(status=["starting", "active", "suspended"]), 30,
                   message="alice's sessions to end with her connection")
        assert {s["id"]: s["end_reason"] for s in alice.list()}[mine] == "deleted"
        assert not bob.list(status=["starting", "active", "suspended"])


@pytest.mark.slow
def test_disconnect_suspends_or_keeps_per_setting(live, tmp_path):
    alice = Client(live.url, secret(live, "alice"))

    async def make(client_of):
        async with client_of() as mcp:
            made = await mcp.call_tool("create_session", {"label": "to outlive the client"})
            assert not made.is_error, text(made)
            # Named: a connectionless client has no current session.
            ran = await mcp.call_tool("run_command", {"command": "version",
                                                      "session_id": made.structured_content["session"]["id"]})
            assert not ran.is_error
            return made.structured_content["session"]["id"]

    with http_server(live, tmp_path, CXS_MCP_ON_DISCONNECT="suspend") as url:
        suspended = anyio.run(make, lambda: over_http(url, alice.token))
        wait_until(lambda: alice.get(suspended)["status"] == "suspended", 60, message="the session to be suspended")
        # Stopping the server ends (here: suspends) what its live connections made.
        async def server_stops():
            async with over_http(url, alice.token) as mcp:
                made = await mcp.call_tool("create_session", {"label": "the server stops"})
                http_server.process.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(lambda: http_server.process.wait(60))
                return made.structured_content["session"]["id"]
        stopped = anyio.run(server_stops)           # the client's closing DELETE finds nobody: a warning
        assert alice.get(stopped)["status"] == "suspended"      # before the process was gone
        alice.delete(stopped)

    with http_server(live, tmp_path, CXS_MCP_ON_DISCONNECT="suspend") as url:
        # A client of the 2026-07-28 era over HTTP has no connection (each request stands alone):
        # nothing tells when it is gone, so its sessions are kept (docs/mcp.md).
        unbound = anyio.run(make, lambda: over_http(url, alice.token, mode="2026-07-28"))
        assert alice.get(unbound)["status"] == "active"
        alice.delete(unbound)

    kept = anyio.run(make, lambda: stdio(live, alice.token, "--on-disconnect", "keep"))
    # A later client picks both up: the suspended one resumes on its first command.
    async def later():
        async with stdio(live, alice.token) as mcp:
            listed = await mcp.call_tool("list_sessions", {})
            assert {s["id"]: s["status"] for s in listed.structured_content["sessions"]} == {
                suspended: "suspended", kept: "active"}
            back = await mcp.call_tool("run_command", {"command": "version", "session_id": suspended})
            assert not back.is_error and "UCSF ChimeraX" in text(back)
    anyio.run(later)
    assert alice.get(suspended)["status"] == "active" and alice.get(kept)["status"] == "active"
    for sid in (suspended, kept):           # not made by that client: left as they are
        alice.delete(sid)


async def run_and_cancel(mcp, live, admin):
    """A trusted loop run through MCP: progress while it runs, interrupted by the call's cancellation."""
    made = await mcp.call_tool("create_session", {"label": "long"})
    sid = made.structured_content["session"]["id"]
    place(workspace(live, sid), "loop.py", LOOP)
    progress, running = [], anyio.Event()

    async def on_progress(value, total, message):
        progress.append((value, message))
        if "tick 1" in message:             # the command's own log lines come with the progress
            running.set()
    async with anyio.create_task_group() as group:
        async def call():
            await mcp.call_tool("run_command", {"command": "runscript loop.py"}, progress_callback=on_progress)
            raise AssertionError("the call was to be cancelled")
        group.start_soon(call)
        with anyio.fail_after(60):
            await running.wait()
        group.cancel_scope.cancel()             # the client's cancellation
    assert [value for value, _ in progress] == sorted(value for value, _ in progress)
    assert all("runscript loop.py" in message for _, message in progress)
    # Waited in a thread: the client's event loop must go on to send the cancellation.
    state = await anyio.to_thread.run_sync(lambda: wait_until(lambda: (lambda c: c if c["status"] != "running"
                                                                       else None)(admin.commands(sid)["commands"][-1]),
                                                              15, message="the command to be interrupted"))
    assert state["command"] == "runscript loop.py" and state["status"] == "interrupted"
    after = await mcp.call_tool("list_models", {})         # the session goes on
    assert not after.is_error and "0 models" in text(after)


@pytest.mark.slow
def test_a_long_command_reports_progress_and_a_cancelled_call_interrupts_it(live, tmp_path):
    admin = Client(live.url, secret(live, "boss", "admin"))        # trusted: its runscript runs Python

    async def both(url):
        async with over_http(url, admin.token) as mcp:
            await run_and_cancel(mcp, live, admin)
        async with stdio(live, admin.token) as mcp:
            await run_and_cancel(mcp, live, admin)
    with http_server(live, tmp_path) as url:
        anyio.run(both, url)


@pytest.mark.slow
def test_a_stdio_server_stopped_by_a_signal_ends_its_sessions(live):
    alice = Client(live.url, secret(live, "alice"))

    async def signalled():
        with pytest.raises(BaseException) as gone:          # the server goes from under the client
            async with stdio(live, alice.token) as mcp:
                made = await mcp.call_tool("create_session", {"label": "signalled"})
                sid = made.structured_content["session"]["id"]
                [server] = servers_spawned()
                server.send_signal(signal.SIGTERM)
                # Unanswered: the server ends its sessions, then exits, which closes the connection.
                await mcp.call_tool("list_sessions", {})
        assert gone.group_contains(MCPError, match="Connection closed")
        return sid
    sid = anyio.run(signalled)
    assert {s["id"]: s["end_reason"] for s in alice.list()}[sid] == "deleted"


def test_the_documented_client_configurations():
    blocks = [json.loads(block) for block in doc_blocks("json")]
    assert len(blocks) == 3
    servers = [entry for block in blocks for entry in (block.get("mcpServers") or block["servers"]).values()]
    for entry in servers:
        if entry.get("type") == "http":
            assert entry["url"].endswith("/mcp") and entry["headers"]["Authorization"].startswith("Bearer ")
        else:
            assert os.path.basename(entry["command"]) == "cxs" and entry["args"] == ["mcp"]
            assert set(entry["env"]) == {"CXS_URL", "CXS_TOKEN"}
    for block in blocks[1:]:            # VS Code asks for the token once, as a secret
        assert block["inputs"][0]["password"] is True and "${input:cxs-token}" in json.dumps(block["servers"])


@pytest.mark.slow
def test_behind_nginx_as_documented(live, tmp_path):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (make test-deps installs Debian's nginx-light as root)")
    admin = Client(live.url, secret(live, "boss", "admin"))
    [location] = doc_blocks("nginx")
    with http_server(live, tmp_path) as direct:
        port = free_port()
        upstream = direct.rsplit("/mcp", 1)[0]
        site = "server {\n listen 127.0.0.1:%d;\n%s}\n" % (port, location.replace("http://127.0.0.1:8765", upstream))
        (tmp_path / "nginx.conf").write_text(
            "daemon off; pid %s/nginx.pid; error_log %s/error.log;\nevents {}\n"
            "http { access_log %s/access.log; client_body_temp_path %s; proxy_temp_path %s;\n%s}\n"
            % ((tmp_path,) * 3 + (tmp_path / "body", tmp_path / "proxy", site)))
        proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = "http://127.0.0.1:%d/mcp" % port

            def up():
                try:
                    return requests.post(url, json={}, timeout=1).status_code == 401       # reaches cxs mcp
                except requests.RequestException:
                    return False
            wait_until(up, 10, message="nginx in front of cxs mcp")

            async def through_nginx():
                async with over_http(url, admin.token) as mcp:
                    await run_and_cancel(mcp, live, admin)      # progress arrives as it is sent
                    return (await mcp.call_tool("list_sessions", {})).structured_content["sessions"][0]["id"]
            sid = anyio.run(through_nginx)
            wait_until(lambda: {s["id"]: s["status"] for s in admin.list()}[sid] == "terminated", 30,
                       message="the session to end with its connection")
        finally:
            proc.terminate()
            proc.wait(10)
