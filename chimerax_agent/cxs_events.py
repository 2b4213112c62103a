"""What happens in this ChimeraX, as numbered events the service relays to
its users (`GET /events?after=N`): every log message as ChimeraX writes it,
and each command's start and end (with the service's command id).

The agent keeps the last BUFFER events; a reader names the last one it saw
and gets what came after, waiting up to its timeout for the first new one. A
reader that fell further behind than the buffer is told how many it missed.
"""
import collections
import threading
import time

BUFFER = 2000


class Events:
    def __init__(self, size=BUFFER):
        self.buffer = collections.deque(maxlen=size)
        self.changed = threading.Condition()
        self.last = 0

    def publish(self, kind, data):
        with self.changed:
            self.last += 1
            self.buffer.append({"id": self.last, "type": kind, "time": time.time(), "data": data})
            self.changed.notify_all()

    def after(self, seen, timeout):
        """({"events": [...], "last": N, "missed": M}) of those after `seen`,
        waiting up to `timeout` s for one if there are none yet."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.last <= seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            if seen > self.last:        # ids of an earlier process: from its start
                seen = 0
            found = [event for event in self.buffer if event["id"] > seen]
            oldest = found[0]["id"] if found else self.last + 1
            return {"events": found, "last": self.last, "missed": max(0, oldest - seen - 1)}


def log_to(events):
    """A ChimeraX log (logger.add_log) that publishes each message as plain text."""
    from chimerax.core.logger import PlainTextLog

    class Publishing(PlainTextLog):
        excludes_other_logs = False

        def log(self, level, msg):
            events.publish("log", {"level": self.LEVEL_DESCRIPTS[level], "text": msg})
            return False        # the other logs get it too

    return Publishing()
