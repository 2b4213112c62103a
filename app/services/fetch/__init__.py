"""Fetching from structure databases for sandboxed sessions: ChimeraX's own
fetchers end in `fetch_file`, which the agent hands to the service; the
service decides (allowlist, rate), downloads once into a shared read-only
cache, and answers with the cached file's path."""
