"""What may be fetched, and from where: URL prefixes (FETCH_ALLOWED), mirror
rules (FETCH_MIRRORS) and the scheme a download uses."""
from urllib.parse import urlsplit


class FetchRefused(Exception):
    """A fetch the service will not make; `result` is its metrics label."""

    def __init__(self, message: str, result: str) -> None:
        super().__init__(message)
        self.message, self.result = message, result


def parse_mirrors(text: str | list[str] | dict[str, str]) -> list[tuple[str, str]]:
    """`prefix=replacement` rules (comma-separated), longest prefix first."""
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        items = text if isinstance(text, list) else [part for part in str(text).split(",") if part.strip()]
        pairs = []
        for item in items:
            prefix, sep, replacement = item.partition("=")
            if not sep or not prefix.strip() or not replacement.strip():
                raise ValueError("%r is not prefix=replacement" % item)
            pairs.append((prefix.strip(), replacement.strip()))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def allowed(url: str, prefixes: list[str]) -> bool:
    """Whether `url` starts with an allowed prefix, compared as a URL: scheme and
    host case-insensitively, never through userinfo, an odd port or `..`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https", "ftp") or not parts.hostname or parts.username \
            or parts.password or "\\" in url or any(ord(c) < 33 for c in url):
        return False
    if "/../" in parts.path + "/" or "/./" in parts.path + "/":
        return False
    normal = "%s://%s%s" % (parts.scheme.lower(), parts.netloc.lower(), parts.path)
    if parts.query:
        normal += "?" + parts.query
    return any(normal.startswith(prefix) for prefix in prefixes)


def check(url: str, prefixes: list[str]) -> None:
    if not allowed(url, prefixes):
        raise FetchRefused("fetching %s is not allowed (FETCH_ALLOWED lists the sources)" % url, "not_allowed")


def download_url(url: str, mirrors: list[tuple[str, str]]) -> str:
    """Where the service downloads `url` from: a mirror's copy if a rule says
    so; an ftp:// source over https from the same host and path (ChimeraX
    picks ftp for EMDB outside .edu/.gov; those hosts serve both)."""
    for prefix, replacement in mirrors:
        if url.startswith(prefix):
            return replacement + url[len(prefix):]
    if url.lower().startswith("ftp://"):
        return "https://" + url[len("ftp://"):]
    return url
