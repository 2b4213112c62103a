"""Shares and share links of a session (docs/sharing.md)."""
from marshmallow import RAISE, Schema, fields, validate

from .sessions import Timestamp


class ShareRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    user = fields.String(required=True, validate=validate.Length(min=1, max=64))
    access = fields.String(required=True, validate=validate.OneOf(("view", "control")), metadata={
        "description": "view: the session, its snapshot and scene, files, history and live events; control: "
                       "also commands, interrupts and uploads"})
    expires_in = fields.Integer(load_default=None, validate=validate.Range(min=1, max=366 * 86400))


class ShareSchema(Schema):
    id = fields.String()
    user = fields.String()
    access = fields.String()
    created_by = fields.String()
    created_at = Timestamp()
    expires_at = Timestamp(allow_none=True)


class ShareListSchema(Schema):
    shares = fields.List(fields.Nested(ShareSchema))


class LinkRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    access = fields.String(load_default="view", validate=validate.OneOf(("view",)),
                           metadata={"description": "a link shows the session; it never controls it"})
    expires_in = fields.Integer(load_default=None, validate=validate.Range(min=1, max=366 * 86400))


class LinkSchema(Schema):
    id = fields.String()
    session_id = fields.String()
    created_by = fields.String()
    created_at = Timestamp()
    expires_at = Timestamp(allow_none=True)


class NewLinkSchema(LinkSchema):
    url = fields.String(metadata={"description": "the link: its secret is after `#` (browsers never send it); "
                                                "shown this once"})


class LinkListSchema(Schema):
    links = fields.List(fields.Nested(LinkSchema))
