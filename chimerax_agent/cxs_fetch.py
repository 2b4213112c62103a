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
import shutil
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
        answer = _ask(exchange, request, timeout)
        if answer is None:
            raise UserError("Fetching %s failed: the service did not answer" % (name or url))
        if answer.get("error") or not answer.get("path"):
            raise UserError("Fetching %s failed: %s" % (name or url, answer.get("error") or "no file"))
        given[key] = answer["path"]
        return answer["path"]

    def retrieve_url(url, filename, *, logger=None, uncompress=False, transmit_compressed=True, update=False,
                     check_certificates=True, name=None, timeout=60, error_status=True):
        # What `open <URL>` (ChimeraX's web fetch) calls: a typed URL, which the
        # service takes only from trusted profiles and only with FETCH_ALLOW_URLS.
        from urllib.request import URLError
        exchange = server.exchange
        if exchange is None or threading.current_thread() is not main:
            raise URLError("fetching %s is only possible within a command" % url)
        request = {"id": next(_ids), "kind": "url", "url": str(url), "name": str(name or url),
                   "save_name": os.path.basename(str(filename)), "save_dir": None, "uncompress": bool(uncompress)}
        answer = _ask(exchange, request, timeout)
        if answer is None or answer.get("error") or not answer.get("path"):
            raise URLError((answer or {}).get("error") or "the service did not answer")
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        shutil.copyfile(answer["path"], filename)
        return answer.get("content_type")

    fetch.fetch_file = fetch_file
    replaced = {original: fetch_file}
    if getattr(fetch, "retrieve_url", None) is not None:
        replaced[fetch.retrieve_url] = retrieve_url
        fetch.retrieve_url = retrieve_url
    for module in list(sys.modules.values()):
        for attribute in ("fetch_file", "retrieve_url"):
            value = getattr(module, attribute, None)
            if value in replaced and module is not fetch:
                setattr(module, attribute, replaced[value])
    return True


def _ask(exchange, request, timeout):
    """The service's answer to one fetch of the running command, or None in time."""
    exchange.pending = request["id"]
    exchange.events.put(("fetch", request))
    try:
        return exchange.replies.get(timeout=float(timeout or 60) + ANSWER_GRACE)
    except queue.Empty:
        return None
    finally:
        exchange.pending = None
