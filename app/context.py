"""Per-request access to the store and services (one store connection per worker thread)."""
from flask import current_app, g

from .services.identity.tokens import TokenService

EXTENSION = "chimerax_sessions"


def runtime():
    """App-wide objects built once by create_app (launcher, executable, sweeper)."""
    return current_app.extensions[EXTENSION]


def get_store():
    """This thread's store connection, kept across requests: opening SQLite per
    request cost more than the queries themselves (see BENCHMARKS.md)."""
    return runtime().thread_store()


def get_session_service():
    service = g.get("session_service")
    if service is None:
        rt = runtime()
        service = g.session_service = rt.session_service(rt.thread_store())
    return service


def get_token_service():
    config = current_app.config
    return TokenService(get_store(), cache_seconds=config["TOKEN_CACHE_SECONDS"],
                        max_lifetime=config["TOKEN_MAX_LIFETIME"])
