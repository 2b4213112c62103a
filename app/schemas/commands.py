"""A session's commands as resources, their interruption and its event stream."""
from marshmallow import RAISE, Schema, fields, validate

from .sessions import HistoryEntrySchema

STATES = ("running", "done", "failed", "interrupted")


class CommandStateSchema(Schema):
    id = fields.String(allow_none=True)
    session = fields.String(metadata={"description": "the session's id (in the reply to a start)"})
    command = fields.String()
    status = fields.String(metadata={"enum": list(STATES)})
    at = fields.Float()
    verdict = fields.String()
    ok = fields.Boolean(allow_none=True)
    duration_ms = fields.Float(allow_none=True)
    user = fields.String(allow_none=True)
    via = fields.String(allow_none=True)
    # Once ended, a command run with wait false keeps the synchronous reply's parts:
    log = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    json_values = fields.List(fields.Raw())
    error = fields.Dict(allow_none=True)


class CommandEntrySchema(HistoryEntrySchema):
    id = fields.String(attribute="command_id", allow_none=True)
    status = fields.String(allow_none=True)
    user = fields.String(allow_none=True)
    via = fields.String(allow_none=True, metadata={"description": "the token user that acted for `user` (X-Act-As)"})


class CommandListSchema(Schema):
    commands = fields.List(fields.Nested(CommandEntrySchema))
    total = fields.Integer()
    offset = fields.Integer()
    limit = fields.Integer()


class CommandListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class InterruptSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64), metadata={
        "description": "interrupt only this command (none: whichever runs)"})


class InterruptedSchema(Schema):
    interrupted = fields.String(allow_none=True)
    command = fields.String(allow_none=True)
    session = fields.String(metadata={"description": "active (it stopped), or ended (unresponsive)"})
