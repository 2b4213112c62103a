"""The gunicorn worker class: gthread, with a read timeout on client sockets.

gunicorn's gthread worker serves each request on a thread from a bounded
pool and keeps idle connections in a poller, so a long command holds one
thread, not a worker. It waits for a client's first bytes without a thread,
but once they arrive it reads the rest of the request with no timeout: a
client that sends half a request line and stops would hold a thread
forever. This worker gives every client socket a timeout
(CLIENT_READ_TIMEOUT, default 10 s) wherever gunicorn makes it blocking, so
such a client is dropped after that long.
"""
import os
import socket

from gunicorn.workers.gthread import ThreadWorker

CLIENT_READ_TIMEOUT = float(os.environ.get("CLIENT_READ_TIMEOUT", "10"))


class _TimedSocket(socket.socket):
    # No new slots: same layout as socket.socket, so an accepted socket can become one.
    __slots__ = ()

    def setblocking(self, flag):
        if flag:
            self.settimeout(CLIENT_READ_TIMEOUT)
        else:
            super().setblocking(False)


class Worker(ThreadWorker):
    def handle(self, conn):
        if type(conn.sock) is socket.socket:
            conn.sock.__class__ = _TimedSocket
        return super().handle(conn)
