"""The sweeper's leader lock (no ChimeraX needed)."""
import os

from app.services.sweeper import SweeperLock


def test_sweeper_lock_is_exclusive_and_released_on_death(tmp_path):
    path = str(tmp_path / "sweeper.lock")
    first, second = SweeperLock(path), SweeperLock(path)
    assert first.try_acquire() and first.held
    assert not second.try_acquire()
    assert first.try_acquire()                  # re-entrant for its holder
    os.close(first._fd)                         # what the kernel does when the holder dies
    assert second.try_acquire()
