"""HTTP in/out for tokens over the API (/api/tokens)."""
from flask import g, jsonify

from ..context import get_token_service
from ..schemas.tokens import NewTokenSchema
from ..services.errors import Forbidden, NotFound

_new = NewTokenSchema()


def create(args):
    token_id, secret, record = get_token_service().issue(
        g.principal, args["scopes"], args["expires_in"], note=args["note"], user=args["user"],
        act_as=args["act_as"], role=args["role"])
    shown = _new.dump(record)
    shown["token"] = secret
    # Already dumped: a Response passes flask-smorest's decorator as it is.
    response = jsonify(shown)
    response.status_code = 201
    return response


def listing(args):
    principal = g.principal
    if (args["all"] or args["user"] not in (None, principal.user)) and not principal.is_admin:
        raise Forbidden("only admins (admin:read) list other users' tokens")
    user = None if args["all"] else (args["user"] or principal.user)
    return {"tokens": get_token_service().list(user)}


def revoke(token_id):
    service, principal = get_token_service(), g.principal
    record = service.get(token_id)
    if record is None or (record.user != principal.user and not (principal.is_admin and principal.may("admin:write"))):
        raise NotFound("no token %d of yours" % token_id)
    service.revoke(token_id)
    return "", 204
