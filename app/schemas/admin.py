"""What the console's pages ask about the caller and, for admins, the service."""
from marshmallow import Schema, fields

from .sessions import Timestamp


class MeSchema(Schema):
    user = fields.String()
    role = fields.String(metadata={"enum": ["user", "admin"]})


class DeniedCommandSchema(Schema):
    at = Timestamp()
    user = fields.String()
    session_id = fields.String()
    command = fields.String()


class OverviewSchema(Schema):
    pool = fields.Dict(keys=fields.String(), values=fields.Integer(),
                       metadata={"description": "warm-pool processes by state"})
    pool_size = fields.Integer(metadata={"description": "POOL_SIZE, the target"})
    denied = fields.List(fields.Nested(DeniedCommandSchema),
                         metadata={"description": "the most recent commands the policy refused, newest first"})
