"""The gunicorn worker class: gthread, with a read timeout on client sockets.

gunicorn's gthread worker serves each request on a thread from a bounded
pool and keeps idle connections in a poller, so a long command holds one
thread, not a worker. It waits for a client's first bytes without a thread,
but once they arrive it reads the rest of the request with no timeout: a
client that sends half a request line and stops would hold a thread
forever. This worker gives every client socket a timeout
(CLIENT_READ_TIMEOUT, default 10 s) wherever gunicorn makes it blocking, so
such a client is dropped after that long.

Every worker waits on the same listening socket: by default a connection
wakes them all, and all but one find nothing to accept (with 4 workers on 2
cores, three wake-ups competing with the one serving it: ~0.3 ms of figure
3). This worker waits for connections with EPOLLEXCLUSIVE, so the kernel
wakes one waiting worker (a worker with no free thread is not waiting). The
kernel wakes the first in line: a worker that accepts while it holds another
connection goes to the back of the line, so connections held long (event
streams, long commands) spread over the workers instead of piling onto one,
while requests one after another stay with one worker, warm (round-robin
for every connection cost figure 3 ~0.3 ms).

A request gunicorn itself cannot read (a request line or headers over its
limits, malformed HTTP) never reaches the app; gunicorn answers it with an
HTML page. This worker has it answered in the API's one JSON error shape.
"""
import json
import logging
import select
import selectors
import socket
import uuid

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from config import server_setting

from .middleware.errors import HTTP_CODES

log = logging.getLogger("cxs.errors")

CLIENT_READ_TIMEOUT = server_setting("CLIENT_READ_TIMEOUT")


class _TimedSocket(socket.socket):
    # No new slots: same layout as socket.socket, so an accepted socket can become one.
    __slots__ = ()

    def setblocking(self, flag):
        if flag:
            self.settimeout(CLIENT_READ_TIMEOUT)
        else:
            super().setblocking(False)


def write_json_error(sock, status, reason, message):
    """In place of gunicorn's `util.write_error` (its only caller is the worker's
    handle_error, which has already logged the cause)."""
    request_id = uuid.uuid4().hex
    log.warning("request %s: %d %s (%s)", request_id, status, reason, message)
    body = json.dumps({"error": {"code": HTTP_CODES.get(status, "bad_request"), "message": message or reason,
                                 "request_id": request_id}}).encode()
    head = ("HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nX-Request-ID: %s\r\n\r\n" % (status, reason, len(body), request_id))
    util.write_nonblock(sock, head.encode("latin-1") + body)


class _ExclusiveListeners(selectors.EpollSelector):
    """Registers the listening sockets `listeners` (fds) with EPOLLEXCLUSIVE."""

    def __init__(self, listeners):
        super().__init__()
        self.listeners = listeners

    def register(self, fileobj, events, data=None):
        key = super().register(fileobj, events, data)
        if key.fd in self.listeners and events == selectors.EVENT_READ:
            self.requeue(key.fd)
        return key

    def requeue(self, fd):
        """Wait on listener `fd` exclusively, at the back of its line of waiters.
        (EPOLLEXCLUSIVE is set when added, never by a modify: added again.)"""
        self._selector.unregister(fd)
        try:
            self._selector.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        except OSError:         # a kernel before 4.5: every worker wakes, as before
            self._selector.register(fd, select.EPOLLIN)


class Worker(ThreadWorker):
    def init_process(self):
        util.write_error = write_json_error     # in the worker process only
        super().init_process()

    def run(self):
        if hasattr(select, "EPOLLEXCLUSIVE") and isinstance(self.poller, selectors.EpollSelector):
            self.poller.close()         # nothing registered yet: run() registers everything
            self.poller = _ExclusiveListeners({listener.fileno() for listener in self.sockets})
        super().run()

    def accept(self, listener):
        super().accept(listener)
        if self.nr_conns > 1 and self._accepting and isinstance(self.poller, _ExclusiveListeners):
            self.poller.requeue(listener.fileno())

    def handle(self, conn):
        if type(conn.sock) is socket.socket:
            conn.sock.__class__ = _TimedSocket
        return super().handle(conn)
