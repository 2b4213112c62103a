"""/api/tokens: scoped, expiring tokens made, listed and revoked over the API
(docs/identity.md)."""
from ..controllers import tokens as c
from ..middleware.auth import ANY, scope
from ..schemas import tokens as s
from .api import Blueprint

bp = Blueprint("tokens", __name__, url_prefix="/api", description="API tokens")


@bp.route("/tokens", methods=["POST"])
@bp.errors(422)
@bp.arguments(s.TokenRequestSchema)
@bp.response(201, s.NewTokenSchema)
@scope(ANY)
def create(args):
    """Make a token (the secret is in this reply only)

    Its scopes are a subset of yours (default: yours), it lives at most as long as the token making it and
    TOKEN_MAX_LIFETIME, and act_as (with the act-as scope) names the users it may act for with X-Act-As.
    Admins (admin:write) may make one for another user, or an admin one (403 otherwise); 422 invalid_token for a lifetime or act_as it cannot have.
    """
    return c.create(args)


@bp.route("/tokens", methods=["GET"])
@bp.arguments(s.TokenListQuerySchema, location="query")
@bp.response(200, s.TokenListSchema)
@scope(ANY)
def listing(args):
    """Your tokens, never their secrets (admins: ?user= or ?all=true)"""
    return c.listing(args)


@bp.route("/tokens/<int:token_id>", methods=["DELETE"])
@bp.errors(404)
@bp.response(204)
@scope(ANY)
def revoke(token_id):
    """Revoke one of your tokens (admins with admin:write: anyone's); seen by every worker within
    TOKEN_CACHE_SECONDS"""
    return c.revoke(token_id)
