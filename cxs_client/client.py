"""A small requests-based client for the ChimeraX session service."""
import builtins
from collections.abc import Sequence
from datetime import date
import os
import threading
import time
from typing import Any

import requests

from .errors import BY_STATUS, ApiError, CommandFailed
from .events import EventStream

# Retried on a refused connection or a 502/503/504 answer: requests that are
# idempotent. A create is retried only on 429/503, which say nothing was made.
IDEMPOTENT = {"GET", "PUT", "DELETE"}
RETRY_STATUSES = {502, 503, 504}
JSON = dict[str, Any]     # a reply's body, as the API document describes it


class Client:
    """`act_as`: a user this client acts for (X-Act-As on every request): its
    token needs the act-as scope and an act_as pattern that matches the user."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 120,
                 retries: int = 3, backoff: float = 0.5, act_as: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get("CXS_URL", "http://127.0.0.1:8000")).rstrip("/")
        token = token or os.environ.get("CXS_TOKEN")
        if not token:
            raise ValueError("a token is needed (argument or CXS_TOKEN)")
        self.token, self.act_as = token, act_as
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + token
        if act_as:
            self.http.headers["X-Act-As"] = act_as

    def acting_as(self, user: str) -> "Client":
        """A new client with the same token and settings that acts for `user`
        (a portal's back-end: one token, each request as the user it serves)."""
        return Client(self.base_url, self.token, self.timeout, self.retries, self.backoff, act_as=user)

    # Transport

    def _request(self, method, path, retry_create=False, **kw):
        url = self.base_url + path
        kw.setdefault("timeout", self.timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.request(method, url, **kw)
            except requests.ConnectionError:
                if method in IDEMPOTENT and attempt <= self.retries:
                    time.sleep(self.backoff * attempt)
                    continue
                raise
            if response.status_code < 400:
                return response
            retryable = (method in IDEMPOTENT and response.status_code in RETRY_STATUSES) or (
                retry_create and response.status_code == 503)
            if retryable and attempt <= self.retries:
                time.sleep(min(float(response.headers.get("Retry-After", self.backoff * attempt)), 30))
                continue
            raise _error(response)

    # Sessions

    def create(self, label: str | None = None, idle_timeout: int | None = None, wait: bool = True,
               file: str | None = None) -> JSON:
        fields = {k: v for k, v in (("label", label), ("idle_timeout", idle_timeout)) if v is not None}
        if file is None:
            body = dict(fields, wait=wait)
            return self._request("POST", "/api/sessions", retry_create=True, json=body).json()
        form = {k: str(v) for k, v in fields.items()}
        form["wait"] = "true" if wait else "false"
        with open(file, "rb") as handle:
            files = {"file": (os.path.basename(file), handle)}
            return self._request("POST", "/api/sessions", data=form, files=files).json()

    def get(self, session_id: str) -> JSON:
        return self._request("GET", "/api/sessions/" + session_id).json()

    def list(self, status: str | Sequence[str] | None = None, user: str | None = None,
             limit: int | None = None) -> builtins.list[JSON]:
        """Sessions, newest first: all of them, or the newest `limit`. `status`:
        one status or several. (The service answers in pages; this follows them.)"""
        params = {k: v for k, v in (("status", status), ("user", user)) if v}
        sessions: builtins.list[JSON] = []
        while limit is None or len(sessions) < limit:
            page = self._request("GET", "/api/sessions", params=params).json()
            sessions += page["sessions"]
            if not page["has_more"]:
                break
            params["starting_after"] = sessions[-1]["id"]
        return sessions[:limit]

    def delete(self, session_id: str) -> None:
        self._request("DELETE", "/api/sessions/" + session_id)

    def heartbeat(self, session_id: str) -> JSON:
        return self._request("PUT", "/api/sessions/%s/heartbeat" % session_id).json()

    def run(self, session_id: str, command: str, check: bool = True, wait: bool = True) -> JSON:
        """Run a command line; with `check`, a ChimeraX error raises CommandFailed.
        With `wait` False, return at once the started command ({"id", "status":
        "running", ...}): follow it with command(), wait_for(), events()."""
        body: JSON = {"command": command} if wait else {"command": command, "wait": False}
        result = self._request("POST", "/api/sessions/%s/commands" % session_id, json=body).json()
        if wait and check and not result["ok"]:
            raise CommandFailed(result)
        return result

    # Commands as resources

    def command(self, session_id: str, command_id: str) -> JSON:
        """{"id", "command", "status": running|done|failed|interrupted, "at", "verdict", "ok",
        "duration_ms", "user"}, and once a command run with wait False ended, its `log`,
        `json_values` and `error`."""
        return self._request("GET", "/api/sessions/%s/commands/%s" % (session_id, command_id)).json()

    def commands(self, session_id: str, offset: int = 0, limit: int = 100) -> JSON:
        """{"commands": [...], "total", "offset", "limit"}: the session's commands, oldest first."""
        return self._request("GET", "/api/sessions/%s/commands" % session_id,
                             params={"offset": offset, "limit": limit}).json()

    def wait_for(self, session_id: str, command_id: str, timeout: float = 600, interval: float = 0.1) -> JSON:
        """The command's state once it is no longer running; TimeoutError if it
        still runs after `timeout` s. Polls, from every `interval` s up to every 2 s."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.command(session_id, command_id)
            if state["status"] != "running":
                return state
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("command %s of session %s still runs after %g s" % (command_id, session_id,
                                                                                      timeout))
            time.sleep(min(interval, left))
            interval = min(interval * 1.5, 2.0)

    def interrupt(self, session_id: str, command_id: str | None = None) -> JSON:
        """Interrupt the running command (only `command_id`, if given) as Ctrl-C would:
        {"interrupted": id, "command", "session": "active"}, or "ended" if it ignored the
        interrupt and the process was ended. Conflict (not_running) if nothing (or not it) runs."""
        body = {"id": command_id} if command_id else {}
        return self._request("POST", "/api/sessions/%s/interrupt" % session_id, json=body).json()

    def events(self, session_id: str, last_event_id: str | None = None, reconnect: bool = False,
               timeout: float = 60) -> EventStream:
        """The session's live events: an iterator of {"id", "event", "data"} (see EventStream),
        with close(), usable as a context manager. `last_event_id`: resume after it;
        `reconnect`: on a dropped connection, open again where it left off."""
        return EventStream(self, session_id, last_event_id, reconnect, timeout)

    # Files

    def upload(self, session_id: str, path: str, name: str | None = None) -> JSON:
        with open(path, "rb") as handle:
            files = {"file": (name or os.path.basename(path), handle)}
            return self._request("POST", "/api/sessions/%s/files" % session_id, files=files).json()

    def files(self, session_id: str) -> builtins.list[JSON]:
        return self._request("GET", "/api/sessions/%s/files" % session_id).json()["files"]

    def download(self, session_id: str, name: str, dest: str | None = None) -> bytes:
        data = self._request("GET", "/api/sessions/%s/files/%s" % (session_id, name)).content
        if dest:
            with open(dest, "wb") as out:
                out.write(data)
        return data

    def snapshot(self, session_id: str, width: int = 800, height: int = 600, supersample: int = 3,
                 dest: str | None = None) -> bytes:
        data = self._request("GET", "/api/sessions/%s/snapshot" % session_id,
                             params={"width": width, "height": height, "supersample": supersample}).content
        if dest:
            with open(dest, "wb") as out:
                out.write(data)
        return data

    def scene(self, session_id: str, dest: str | None = None, **options: Any) -> bytes:
        """The scene as binary glTF; options as the API's (center, size, flat_lighting, ...)."""
        params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items()}
        data = self._request("GET", "/api/sessions/%s/scene.glb" % session_id, params=params).content
        if dest:
            with open(dest, "wb") as out:
                out.write(data)
        return data

    def suspend(self, session_id: str) -> JSON:
        """Save the scene and end the process; the session becomes `suspended`."""
        return self._request("POST", "/api/sessions/%s/suspend" % session_id).json()

    def resume(self, session_id: str, wait: bool = True, timeout: float = 120) -> JSON:
        """Restore a suspended session; with `wait`, return once it is active again."""
        session = self._request("POST", "/api/sessions/%s/resume" % session_id).json()
        deadline = time.monotonic() + timeout
        while wait and session["status"] == "starting" and time.monotonic() < deadline:
            time.sleep(0.2)
            session = self.get(session_id)
        return session

    def history(self, session_id: str, offset: int = 0, limit: int = 100) -> JSON:
        """{"history": [...], "total", "offset", "limit"}: the session's commands, oldest first."""
        return self._request("GET", "/api/sessions/%s/history" % session_id,
                             params={"offset": offset, "limit": limit}).json()

    def history_script(self, session_id: str) -> str:
        """The allowed, successful commands as a ChimeraX command script (.cxc text)."""
        return self._request("GET", "/api/sessions/%s/history" % session_id, params={"format": "cxc"}).text

    # Accounting

    def usage(self, user: str | None = None, since: str | date | None = None,
              until: str | date | None = None) -> JSON:
        """{"user", "since", "until", "days": [{day, session_hours, cpu_seconds,
        memory_peak_bytes}], "totals"}: your usage per UTC day (admins: `user`'s);
        days as 'YYYY-MM-DD' or dates (default: the last 30 days to today)."""
        params = {k: v.isoformat() if isinstance(v, date) else v
                  for k, v in (("user", user), ("since", since), ("until", until)) if v is not None}
        return self._request("GET", "/api/usage", params=params).json()

    # Tokens (docs/identity.md): narrower, expiring tokens made over the API

    def create_token(self, scopes: Sequence[str] | None = None, expires_in: float | None = None,
                     note: str | None = None, user: str | None = None, role: str | None = None,
                     act_as: str | None = None) -> JSON:
        """A new token: {"token" (the secret, in this reply only), "id", "user", "role",
        "scopes", "expires_at", ...}. Its scopes are a subset of yours (default: yours)
        and it never outlives the token making it; `user`, `role`: admins only;
        `act_as`: a user-name pattern it may act for (needs the act-as scope)."""
        body: JSON = {k: v for k, v in (("scopes", builtins.list(scopes) if scopes is not None else None),
                                        ("expires_in", int(expires_in) if expires_in is not None else None),
                                        ("note", note), ("user", user), ("role", role), ("act_as", act_as))
                      if v is not None}
        return self._request("POST", "/api/tokens", json=body).json()

    def tokens(self, all: bool = False, user: str | None = None) -> builtins.list[JSON]:
        """Your tokens (admins: everyone's with `all`, or `user`'s), never their secrets."""
        params: JSON = {"all": "true"} if all else {}
        if user:
            params["user"] = user
        return self._request("GET", "/api/tokens", params=params).json()["tokens"]

    def revoke_token(self, token_id: int | str) -> None:
        """Revoke a token: refused by every worker within TOKEN_CACHE_SECONDS."""
        self._request("DELETE", "/api/tokens/%s" % token_id)

    # Sharing (the owner's or an admin's): with users, and as secret read-only links

    def share(self, session_id: str, user: str, access: str = "view", expires_in: float | None = None) -> JSON:
        """Share the session with `user`: access "view" or "control" (also commands,
        interrupts, uploads). A user's new share replaces their old one."""
        body: JSON = {"user": user, "access": access}
        if expires_in is not None:
            body["expires_in"] = int(expires_in)
        return self._request("POST", "/api/sessions/%s/shares" % session_id, json=body).json()

    def shares(self, session_id: str) -> builtins.list[JSON]:
        """The session's live shares: [{id, user, access, created_by, created_at, expires_at}]."""
        return self._request("GET", "/api/sessions/%s/shares" % session_id).json()["shares"]

    def unshare(self, session_id: str, share_id: str) -> None:
        self._request("DELETE", "/api/sessions/%s/shares/%s" % (session_id, share_id))

    def create_share_link(self, session_id: str, expires_in: float | None = None) -> JSON:
        """A secret link to a read-only live view: {id, url, expires_at, ...}. The
        url (its secret after `#`) is in this reply only; Conflict (too_many_links)
        past SHARE_LINKS_PER_SESSION."""
        body: JSON = {} if expires_in is None else {"expires_in": int(expires_in)}
        return self._request("POST", "/api/sessions/%s/share-links" % session_id, json=body).json()

    def share_links(self, session_id: str) -> builtins.list[JSON]:
        """The session's live share links, without their secrets."""
        return self._request("GET", "/api/sessions/%s/share-links" % session_id).json()["links"]

    def revoke_share_link(self, session_id: str, link_id: str) -> None:
        self._request("DELETE", "/api/sessions/%s/share-links/%s" % (session_id, link_id))

    def session(self, heartbeat_every: float | None = None, **create_args: Any) -> "Session":
        """A context manager: a new session, deleted on exit, optionally kept alive."""
        return Session(self, heartbeat_every, create_args)


class Session:
    def __init__(self, client, heartbeat_every, create_args):
        self.client, self.heartbeat_every, self.create_args = client, heartbeat_every, create_args
        self.id, self.info = None, None
        self._stop = threading.Event()
        self._beat = None

    def __enter__(self):
        self.info = self.client.create(**self.create_args)
        self.id = self.info["id"]
        if self.heartbeat_every:
            self._beat = threading.Thread(target=self._heartbeats, daemon=True, name="cxs-heartbeat")
            self._beat.start()
        return self

    def _heartbeats(self):
        while not self._stop.wait(self.heartbeat_every):
            try:
                self.client.heartbeat(self.id)
            except ApiError:
                return          # the session ended: nothing left to keep alive

    def run(self, command: str, check: bool = True, wait: bool = True) -> JSON:
        return self.client.run(self.id, command, check=check, wait=wait)

    def __getattr__(self, name):
        # upload, files, download, snapshot, scene, history, get, heartbeat, command, commands,
        # wait_for, interrupt, events, share, shares, unshare, create_share_link, share_links,
        # revoke_share_link: bound to this session
        method = getattr(self.client, name)
        return lambda *a, **kw: method(self.id, *a, **kw)

    def __exit__(self, *exc):
        self._stop.set()
        if self._beat is not None:
            self._beat.join(5)
        try:
            self.client.delete(self.id)
        except ApiError:
            pass
        return False


def _error(response):
    try:
        body = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        body = {"code": "http_%d" % response.status_code, "message": response.text[:200]}
    cls = BY_STATUS.get(response.status_code, ApiError)
    retry_after = response.headers.get("Retry-After")
    return cls(response.status_code, body.get("code"), body.get("message"), body.get("fields"),
               body.get("request_id"), float(retry_after) if retry_after else None)
