"""The sweeper's leader lock on both backends (no ChimeraX needed)."""
import os

import psycopg

from app.store import leader_lock


def test_file_lock_is_exclusive_and_released_on_death(tmp_path):
    url = "sqlite:///" + str(tmp_path / "s.sqlite3")
    first, second = leader_lock(url, "d"), leader_lock(url, "d")
    assert first.try_acquire() and first.held
    assert not second.try_acquire()
    assert first.try_acquire()                  # re-entrant for its holder
    os.close(first._fd)                         # what the kernel does when the holder dies
    first._fd = None
    assert second.try_acquire()
    second.release()


def test_advisory_lock_is_per_domain_and_released_when_its_connection_dies(database_url):
    if database_url.startswith("sqlite"):
        return      # the file lock above
    first, second, elsewhere = leader_lock(database_url, "d"), leader_lock(database_url, "d"), \
        leader_lock(database_url, "other")
    try:
        assert first.try_acquire() and first.try_acquire()
        assert not second.try_acquire()
        assert elsewhere.try_acquire()          # another domain has its own sweeper
        # Kill the holder's backend, as the server does when the holder's host dies.
        pid = first._connection.execute(__import__("sqlalchemy").text("SELECT pg_backend_pid()")).scalar()
        url = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert second.try_acquire()
        assert not first.try_acquire()          # the old holder notices it lost the role
    finally:
        for lock in (first, second, elsewhere):
            lock.release()


def test_two_threads_of_the_holder_process_both_hold_the_lock(tmp_path, database_url):
    """The sweep and the pool's check ask from two scheduler threads at once: a
    process either holds the role or not, never one thread of it (a thread told
    no made the next sweep announce the leadership again)."""
    import threading
    for url in {"sqlite:///" + str(tmp_path / "s.sqlite3"), database_url}:
        for attempt in range(50):
            # A domain each: a released advisory lock is free once its backend has gone.
            lock, answers, start = leader_lock(url, "d%d" % attempt), [], threading.Barrier(2)

            def ask():
                start.wait()
                answers.append(lock.try_acquire())
            threads = [threading.Thread(target=ask) for _ in range(2)]
            try:
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert answers == [True, True], url
            finally:
                lock.release()
