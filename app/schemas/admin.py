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


class TopSessionSchema(Schema):
    id = fields.String()
    user = fields.String()
    label = fields.String(allow_none=True)
    status = fields.String()
    memory_bytes = fields.Integer(allow_none=True)
    memory_peak_bytes = fields.Integer(allow_none=True)
    cpu_seconds = fields.Float(allow_none=True)


class OverviewSchema(Schema):
    pool = fields.Dict(keys=fields.String(), values=fields.Integer(),
                       metadata={"description": "warm-pool processes by state"})
    pool_size = fields.Integer(metadata={"description": "POOL_SIZE, the target"})
    denied = fields.List(fields.Nested(DeniedCommandSchema),
                         metadata={"description": "the most recent commands the policy refused, newest first"})
    fetch_cache = fields.Dict(keys=fields.String(), values=fields.Integer(),
                              metadata={"description": "the fetch cache: entries, bytes, max_bytes"})
    top_memory = fields.List(fields.Nested(TopSessionSchema), metadata={
        "description": "the 5 live sessions using most memory, as last sampled"})
    top_cpu = fields.List(fields.Nested(TopSessionSchema), metadata={
        "description": "the 5 live sessions that used most CPU so far, as last sampled"})


class CacheEntrySchema(Schema):
    url = fields.String()
    sha256 = fields.String()
    save_name = fields.String()
    size = fields.Integer()
    fetched_at = Timestamp()
    last_used = Timestamp()
    in_use = fields.Boolean(metadata={"description": "a live session opened it: never evicted"})


class FetchCacheSchema(Schema):
    bytes = fields.Integer()
    max_bytes = fields.Integer(metadata={"description": "FETCH_CACHE_MB"})
    entries = fields.List(fields.Nested(CacheEntrySchema))


class PurgeArgsSchema(Schema):
    url = fields.String(metadata={"description": "only this entry (default: every entry not in use)"})


class PurgedSchema(Schema):
    removed = fields.List(fields.String())
    kept_in_use = fields.List(fields.String())
