"""One download into a file beside the cache, bounded in time and size, with
redirects followed only to allowed places."""
from dataclasses import dataclass
import hashlib
import os
import tempfile
import time
import zlib

import requests

from .rules import FetchRefused, allowed

CHUNK = 256 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "cxs-fetch-broker (UCSF ChimeraX session service)"


@dataclass(frozen=True)
class Downloaded:
    path: str       # a temporary file in the cache's folder, to be renamed into place
    sha256: str
    size: int


def download(url: str, into: str, *, timeout: float, max_bytes: int, uncompress: bool,
             redirect_prefixes: list[str], session: requests.Session | None = None) -> Downloaded:
    """Stream `url` into a new file in `into`; FetchRefused on any failure."""
    http = session or requests.Session()
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = http.get(url, stream=True, allow_redirects=False, timeout=(min(10.0, timeout), timeout),
                                headers={"User-Agent": USER_AGENT})
        except requests.Timeout:
            raise FetchRefused("the source did not answer within %g s (%s)" % (timeout, url), "timed_out") from None
        except requests.RequestException as err:
            raise FetchRefused("the source is unreachable (%s): %s" % (url, _reason(err)), "unreachable") from None
        if response.is_redirect:
            target = requests.compat.urljoin(url, response.headers.get("Location", ""))
            response.close()
            if not allowed(target, redirect_prefixes):
                raise FetchRefused("the source redirected to %s, which is not allowed" % target, "not_allowed")
            url = target
            continue
        with response:
            if response.status_code in (404, 410):
                raise FetchRefused("not found at the source (%s)" % url, "not_found")
            if response.status_code != 200:
                raise FetchRefused("the source answered %d for %s" % (response.status_code, url), "source_error")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes and not uncompress:
                raise FetchRefused(_too_large(max_bytes), "too_large")
            return _save(response, into, deadline, max_bytes, uncompress, url, timeout)
    raise FetchRefused("too many redirects fetching %s" % url, "source_error")


def _save(response, into, deadline, max_bytes, uncompress, url, timeout):
    digest, size, received = hashlib.sha256(), 0, 0
    # ChimeraX's retrieve_url(uncompress=True) stores what a gzip body holds.
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if uncompress else None
    fd, path = tempfile.mkstemp(prefix=".download-", dir=into)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                for chunk in response.iter_content(CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise FetchRefused(_too_large(max_bytes), "too_large")
                    if time.monotonic() > deadline:
                        raise FetchRefused("the source did not finish within %g s (%s)" % (timeout, url),
                                           "timed_out")
                    data = inflate.decompress(chunk, max_bytes - size + 1) if inflate else chunk
                    if inflate and inflate.unconsumed_tail:
                        raise FetchRefused(_too_large(max_bytes), "too_large")
                    size += len(data)
                    if size > max_bytes:
                        raise FetchRefused(_too_large(max_bytes), "too_large")
                    digest.update(data)
                    out.write(data)
            except requests.RequestException as err:
                kind = "timed_out" if isinstance(err, requests.Timeout) or "timed out" in str(err) else "unreachable"
                raise FetchRefused("the source stopped sending (%s): %s" % (url, _reason(err)), kind) from None
            except zlib.error:
                raise FetchRefused("the source sent a damaged compressed file (%s)" % url, "source_error") from None
        os.chmod(path, 0o444)
        return Downloaded(path, digest.hexdigest(), size)
    except BaseException:
        os.unlink(path)
        raise


def _too_large(max_bytes):
    return "the file is larger than FETCH_MAX_MB (%d MB)" % (max_bytes // 2**20)


def _reason(err):
    text = str(err)
    return text if len(text) < 200 else text[:200] + "…"
