"""HTTP in/out for a session's shares and share links."""
from flask import g, request

from ..context import get_session_service


def _sharing():
    return get_session_service().sharing


def share(args, session_id):
    return _sharing().share(g.principal, str(session_id), args["user"], args["access"], args["expires_in"]), 201


def shares(session_id):
    return {"shares": _sharing().shares(g.principal, str(session_id))}


def unshare(session_id, share_id):
    _sharing().unshare(g.principal, str(session_id), str(share_id))


def link(args, session_id):
    # The console's own address (behind nginx: its Host and X-Forwarded-Proto, see ProxyFix in the factory).
    return _sharing().link(g.principal, str(session_id), args["expires_in"], request.host_url), 201


def links(session_id):
    return {"links": _sharing().links(g.principal, str(session_id))}


def unlink(session_id, link_id):
    _sharing().unlink(g.principal, str(session_id), str(link_id))
