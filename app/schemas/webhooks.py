"""What the admin API shows of the lifecycle events' outbox (docs/webhooks.md)."""
from marshmallow import Schema, fields

from .sessions import Timestamp

STATES = ["pending", "delivered", "dead"]


class WebhookEventSchema(Schema):
    id = fields.String(metadata={"description": "the event's id (its body's `id`, header X-CXS-Event-Id)"})
    type = fields.String()
    session = fields.String(allow_none=True)
    state = fields.String(metadata={"enum": STATES})
    created_at = Timestamp()
    attempts = fields.Integer(metadata={"description": "sends so far"})
    next_attempt_at = Timestamp(allow_none=True, metadata={"description": "pending: when it is sent next"})
    delivered_at = Timestamp(allow_none=True)
    dead_at = Timestamp(allow_none=True)
    last_error = fields.String(allow_none=True, metadata={"description": "why the last send failed, per URL"})
    body = fields.Dict(metadata={"description": "the JSON object each URL receives"})


class WebhookCountsSchema(Schema):
    pending = fields.Integer()
    delivered = fields.Integer(metadata={"description": "delivered (or skipped: no WEBHOOK_URLS), kept a day"})
    dead = fields.Integer(metadata={"description": "dead after WEBHOOK_MAX_ATTEMPTS sends, kept 30 days"})


class WebhooksSchema(Schema):
    counts = fields.Nested(WebhookCountsSchema)
    pending = fields.List(fields.Nested(WebhookEventSchema), metadata={
        "description": "the first 100 events waiting to be sent, in sending order"})
    dead = fields.List(fields.Nested(WebhookEventSchema), metadata={
        "description": "the 100 most recently dead-lettered events"})
