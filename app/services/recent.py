"""What a worker read recently and may trust for a while: the one rule behind
the token, OIDC and usage caches (each says its own bound and why).

Per process, bounded: past `max_entries` it starts again empty rather than
tracking ages (the keys are few in use; a flood of new ones only costs reads).
"""
from collections.abc import Callable, Hashable
import threading
import time
from typing import Generic, TypeVar

V = TypeVar("V")
MISSING = object()      # get()'s answer when nothing young enough is held (None may be a value)


class Recent(Generic[V]):
    def __init__(self, max_entries: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self._forgot = 0        # bumped by forget(): a read begun before it may be out of date
        self.max_entries = max_entries
        self.clock = clock

    def get(self, key: Hashable, max_age: float) -> V | object:
        """The value read less than `max_age` s ago under `key`, else MISSING."""
        held = self._held.get(key)
        if held is None or self.clock() - held[0] >= max_age:
            return MISSING
        return held[1]

    def reading(self) -> tuple[float, int]:
        """Taken before a read: its value's age counts from here, and it is
        not kept if something was forgotten meanwhile (a revocation that
        committed while the old row was being read)."""
        return self.clock(), self._forgot

    def put(self, key: Hashable, value: V, reading: tuple[float, int]) -> V:
        with self._lock:
            if reading[1] == self._forgot:
                if len(self._held) >= self.max_entries:
                    self._held.clear()
                self._held[key] = (reading[0], value)
        return value

    def forget(self, which: Callable[[Hashable, V], bool] | None = None) -> None:
        """Everything, or the entries `which(key, value)` is true of."""
        with self._lock:
            self._forgot += 1
            if which is None:
                self._held.clear()
                return
            for key in [key for key, (_, value) in self._held.items() if which(key, value)]:
                del self._held[key]
