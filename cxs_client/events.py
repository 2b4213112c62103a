"""A session's live event stream (GET /api/sessions/<id>/events, Server-Sent
Events) as an iterator of {"id", "event", "data"} dicts."""
import codecs
from collections.abc import Generator, Iterator
import json
import socket
import threading
from typing import TYPE_CHECKING, Any

import requests

from .errors import RateLimited, Unavailable

if TYPE_CHECKING:
    from .client import Client

# The statuses a session's stream goes on in (or comes back in, after a drop).
LIVE = {"starting", "active", "suspended"}
JSON = dict[str, Any]


class EventStream:
    """Iterate for the events as they come: `log` {level, text, time},
    `command.started` {id, command, time}, `command.ended` {id, status,
    interrupted, time}, `status` {status, end_reason}, `missed` {events}.
    Comments (keep-alives) are skipped and `data` is JSON-decoded.

    Iteration ends when the session ends (the service closes the stream after
    its last `status`) or on `close()`, which any thread may call. A dropped
    connection raises the transport's error, unless `reconnect`: then the
    stream is opened again with Last-Event-ID (the last id seen), so nothing
    inside the service's buffer is missed, up to the client's `retries`
    attempts in a row."""

    def __init__(self, client: "Client", session_id: str, last_event_id: str | None = None,
                 reconnect: bool = False, timeout: float = 60) -> None:
        self.client, self.session_id, self.reconnect = client, session_id, reconnect
        self.last_event_id = last_event_id
        # A silent stream is a dead one after this long: the service comments every 15 s.
        self.timeout = timeout
        self.retry = 2.0            # s before reconnecting; the service's `retry:` field sets it
        self.status: str | None = None      # the session's, as the stream last said
        self._closed = threading.Event()
        self._response: requests.Response | None = None
        self._events: Generator[JSON, None, None] | None = None
        self._reader: int | None = None     # the thread iterating

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> JSON:
        if self._closed.is_set():
            raise StopIteration
        if self._events is None:
            self._events = self._run()
        self._reader = threading.get_ident()
        return next(self._events)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the stream: iteration stops (a blocked read in another thread returns)."""
        self._closed.set()
        sock = _socket_of(self._response)
        if sock is not None:
            # Closing the file from another thread would not wake a blocked recv; a shutdown does.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._events is not None and self._reader in (None, threading.get_ident()):
            self._events.close()        # not reading now (this thread reads it): release the connection

    def _run(self) -> Generator[JSON, None, None]:
        failures = 0
        dropped: Exception | None
        while True:
            wait = self.retry
            try:
                self._response = self._open()
            except (requests.RequestException, RateLimited, Unavailable) as err:
                # An open refused for now (the old stream's lease not yet released, a full worker).
                if not (self.reconnect and failures) or failures > self.client.retries:
                    raise
                wait = max(wait, getattr(err, "retry_after", None) or 0)
                dropped = err
            else:
                try:
                    for event in self._parse(self._response):
                        failures = 0
                        yield event
                    dropped = None
                except requests.RequestException as err:
                    dropped = err
                finally:
                    self._response.close()
            if self._closed.is_set() or (self.status is not None and self.status not in LIVE):
                return              # closed here, or the session ended and its stream with it
            if not self.reconnect:
                if dropped is not None:
                    raise dropped
                return
            failures += 1
            if failures > self.client.retries:
                raise dropped or requests.ConnectionError("the event stream of %s ended %d times in a row"
                                                          % (self.session_id, failures))
            if self._closed.wait(min(wait, 30)):
                return

    def _open(self) -> requests.Response:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return self.client._request("GET", "/api/sessions/%s/events" % self.session_id, stream=True,
                                    headers=headers, timeout=(min(self.client.timeout, 30), self.timeout))

    def _parse(self, response: requests.Response) -> Iterator[JSON]:
        """The SSE format: fields a line each, an event ended by a blank line."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        buffered, kind, event_id = "", None, None
        data: list[str] = []
        for chunk in response.iter_content(chunk_size=4096):
            if self._closed.is_set():
                return
            buffered += decoder.decode(chunk)
            *lines, buffered = buffered.split("\n")
            for line in lines:
                line = line.removesuffix("\r")
                if not line:
                    if data:
                        yield self._event(event_id, kind or "message", "\n".join(data))
                    kind, data, event_id = None, [], None
                    continue
                if line.startswith(":"):
                    continue            # a comment: the keep-alive
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value) / 1000

    def _event(self, event_id: str | None, kind: str, text: str) -> JSON:
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        if event_id:
            self.last_event_id = event_id
        if kind == "status" and isinstance(data, dict):
            self.status = data.get("status")
        return {"id": event_id, "event": kind, "data": data}



def _socket_of(response: requests.Response | None) -> socket.socket | None:
    """The socket a streamed response reads from: its connection's, or (once the
    connection handed it to the response, as for a reply that ends by closing)
    the one under the response's file."""
    if response is None:
        return None
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        buffered = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
