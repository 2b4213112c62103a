"""API tokens over the API: what may be asked for, and what is shown (never a secret but once)."""
from marshmallow import RAISE, Schema, fields, validate

from ..services.identity.scopes import SCOPES
from .sessions import Timestamp


class TokenRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), load_default=None,
                         validate=validate.Length(min=1, max=len(SCOPES)), metadata={
                             "description": "a subset of your own (default: your own)"})
    expires_in = fields.Integer(load_default=None, validate=validate.Range(min=1, max=10 * 365 * 86400),
                                metadata={"description": "seconds it lives (default: for ever, unless "
                                                         "TOKEN_MAX_LIFETIME or your own token's expiry bounds it)"})
    note = fields.String(load_default=None, validate=validate.Length(max=200))
    user = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                         metadata={"description": "admins (admin:write): the user it is for"})
    role = fields.String(load_default=None, validate=validate.OneOf(("user", "admin")),
                         metadata={"description": "admins (admin:write): the role it has (default user)"})
    act_as = fields.String(load_default=None, validate=validate.Length(min=1, max=64), metadata={
        "description": "a user-name pattern (fnmatch: `lab-*`) it may act for with X-Act-As (needs act-as)"})


class TokenSchema(Schema):
    id = fields.Integer()
    user = fields.String()
    role = fields.String()
    scopes = fields.Method("scope_list")
    created_at = Timestamp()
    expires_at = Timestamp(allow_none=True)
    revoked_at = Timestamp(allow_none=True)
    last_used = Timestamp(allow_none=True)
    act_as = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)

    def scope_list(self, record):
        from ..services.identity.tokens import scopes_of
        return sorted(scopes_of(record))


class NewTokenSchema(TokenSchema):
    token = fields.String(metadata={"description": "the secret: shown this once, stored only as a hash"})


class TokenListSchema(Schema):
    tokens = fields.List(fields.Nested(TokenSchema))


class TokenListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    user = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                         metadata={"description": "admins: this user's"})
    all = fields.Boolean(load_default=False, metadata={"description": "admins: everyone's"})
