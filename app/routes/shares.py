"""A session shared with other users, and its secret share links
(docs/sharing.md): only its owner (or an admin) shares."""
from ..controllers import shares as c
from ..middleware.auth import scope
from ..schemas import shares as s
from .api import Blueprint

bp = Blueprint("shares", __name__, url_prefix="/api/sessions", description="Sharing")


@bp.route("/<uuid:session_id>/shares", methods=["POST"])
@bp.errors(404)
@bp.arguments(s.ShareRequestSchema)
@bp.response(201, s.ShareSchema)
@scope("sessions:write")
def share(args, session_id):
    """Share the session with a user: view, or control (commands, interrupts, uploads too)

    The grantee sees it in their list with its owner and their access; what they run is checked with their
    own policy profile and recorded as theirs; the session counts against its owner's limits. A user's new
    share replaces their old one.
    """
    return c.share(args, session_id)


@bp.route("/<uuid:session_id>/shares", methods=["GET"])
@bp.errors(404)
@bp.response(200, s.ShareListSchema)
@scope("sessions:read")
def shares(session_id):
    """The session's live shares (its owner and admins)"""
    return c.shares(session_id)


@bp.route("/<uuid:session_id>/shares/<uuid:share_id>", methods=["DELETE"])
@bp.errors(404)
@bp.response(204)
@scope("sessions:write")
def unshare(session_id, share_id):
    """Revoke a share: its grantee loses the session at their next request"""
    return c.unshare(session_id, share_id)


@bp.route("/<uuid:session_id>/share-links", methods=["POST"])
@bp.errors(404, 409)
@bp.arguments(s.LinkRequestSchema)
@bp.response(201, s.NewLinkSchema)
@scope("sessions:write")
def link(args, session_id):
    """A secret link to a read-only live view of the session (no token needed)

    The console opens it: the session, its snapshot and its live log. Whoever holds it may look, never act;
    it is revocable, and a session has at most {SHARE_LINKS_PER_SESSION} live ones (409 too_many_links).
    """
    return c.link(args, session_id)


@bp.route("/<uuid:session_id>/share-links", methods=["GET"])
@bp.errors(404)
@bp.response(200, s.LinkListSchema)
@scope("sessions:read")
def links(session_id):
    """The session's live share links (never their secrets)"""
    return c.links(session_id)


@bp.route("/<uuid:session_id>/share-links/<uuid:link_id>", methods=["DELETE"])
@bp.errors(404)
@bp.response(204)
@scope("sessions:write")
def unlink(session_id, link_id):
    """Revoke a share link: it shows nothing from its next request"""
    return c.unlink(session_id, link_id)
