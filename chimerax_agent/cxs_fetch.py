"""Fetching through the service: the one function every ChimeraX database
fetcher ends in, `chimerax.core.fetch.fetch_file`, is replaced so that the
file comes from the service instead of the network (which the sandbox does
not have). ChimeraX keeps its own URLs, names and readers.

While a command runs, a fetch is one more step of the command's exchange with
the service: the agent answers the command's request with `{"fetch": {...}}`,
the service decides and downloads, and posts `{"path"}` (a file it cached,
read-only here) or `{"error"}` to `/fetched`, whose reply is the command's
next step. Without the service's answer in time, the fetch fails as a
ChimeraX error; outside a command, fetching is refused.
"""
import itertools
import os
import queue
import sys
import threading

ANSWER_GRACE = 30       # s beyond ChimeraX's own fetch timeout for the service's answer

_ids = itertools.count(1)


class Exchange:
    """One command's conversation with the service: `events` carries a fetch or
    the final reply to the request side; `replies` the service's answers back."""

    def __init__(self):
        self.events, self.replies = queue.Queue(), queue.Queue()
        self.pending = None


def install(server):
    """Replace fetch_file (and every copy imported by name); False if this
    ChimeraX has none: then nothing fetches at all (no network)."""
    try:
        from chimerax.core import fetch
    except ImportError:
        return False
    original = getattr(fetch, "fetch_file", None)
    if original is None:
        return False
    main = threading.main_thread()
    # What the service answered, by request: cache files are content-addressed,
    # read-only here and kept while this session lives, so asking again for the
    # same URL gets the same file (ChimeraX's ignore_cache asks anyway).
    given = {}

    def fetch_file(session, url, name, save_name, save_dir, *, uncompress=False, transmit_compressed=True,
                   ignore_cache=False, check_certificates=True, timeout=60, error_status=True):
        from chimerax.core.errors import UserError
        key = (str(url), str(save_name or ""), bool(uncompress))
        if not ignore_cache and key in given and os.path.exists(given[key]):
            return given[key]
        exchange = server.exchange
        if exchange is None or threading.current_thread() is not main:
            raise UserError("fetching %s is only possible within a command" % (name or url))
        request = {"id": next(_ids), "url": str(url), "name": str(name or ""), "save_name": str(save_name or ""),
                   "save_dir": None if save_dir is None else str(save_dir), "uncompress": bool(uncompress)}
        exchange.pending = request["id"]
        exchange.events.put(("fetch", request))
        try:
            answer = exchange.replies.get(timeout=float(timeout or 60) + ANSWER_GRACE)
        except queue.Empty:
            raise UserError("Fetching %s failed: the service did not answer" % (name or url)) from None
        finally:
            exchange.pending = None
        if answer.get("error") or not answer.get("path"):
            raise UserError("Fetching %s failed: %s" % (name or url, answer.get("error") or "no file"))
        given[key] = answer["path"]
        return answer["path"]

    fetch.fetch_file = fetch_file
    for module in list(sys.modules.values()):
        if getattr(module, "fetch_file", None) is original:
            module.fetch_file = fetch_file
    return True
