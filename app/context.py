"""Per-request access to the store and services (one store connection per app context)."""
from flask import current_app, g

from .services.tokens import TokenService

EXTENSION = "chimerax_sessions"


def runtime():
    """App-wide objects built once by create_app (launcher, executable, sweeper)."""
    return current_app.extensions[EXTENSION]


def get_store():
    if "store" not in g:
        g.store = runtime().new_store()
    return g.store


def close_store(_exc=None):
    store = g.pop("store", None)
    if store is not None:
        store.close()


def get_session_service():
    if "session_service" not in g:
        g.session_service = runtime().session_service(get_store())
    return g.session_service


def get_token_service():
    return TokenService(get_store())


def init_app(app):
    app.teardown_appcontext(close_store)
