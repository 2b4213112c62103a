"""marshmallow schemas: what the API accepts and what it returns."""
from datetime import datetime, timezone

from flask_smorest.fields import Upload
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from ..store import STATUSES
from .bounds import AtMostChars, Between, RenderedPixels

# Python's str.strip() and ECMAScript's \s disagree on some characters; an
# explicit class keeps the rule the same for the server and the document.
NOT_BLANK = r"^[\s\S]*[^ \t\n\r\f\v]"


class StrictBoolean(fields.Boolean):
    """JSON true/false only: "yes", 1 or "false" are type errors, not guesses."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean (use true or false).")
        return value


class Timestamp(fields.Field):
    """Epoch seconds in the store, ISO 8601 UTC on the wire."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return datetime.fromtimestamp(value, tz=timezone.utc).isoformat(timespec="milliseconds")


class SessionCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    label = fields.String(validate=validate.Length(max=100), allow_none=True)
    idle_timeout = fields.Integer(strict=True, validate=Between(
        "SESSION_IDLE_TIMEOUT_MIN", "SESSION_IDLE_TIMEOUT_MAX", " seconds"))
    wait = StrictBoolean(load_default=True)


PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX = 50, 200


class SessionListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    user = fields.String(validate=validate.Length(min=1, max=64))
    status = fields.List(fields.String(validate=validate.OneOf(STATUSES)), metadata={
        "description": "only sessions in these statuses (repeat the parameter for several)"})
    limit = fields.Integer(load_default=PAGE_LIMIT_DEFAULT, validate=Between(1, PAGE_LIMIT_MAX),
                           metadata={"description": "sessions per page"})
    starting_after = fields.UUID(metadata={
        "description": "the id of the last session of the previous page: this page starts after it"})


class CommandSchema(Schema):
    class Meta:
        unknown = RAISE

    command = fields.String(required=True, validate=[
        validate.Regexp(NOT_BLANK, error="Must not be blank."), AtMostChars("MAX_COMMAND_LENGTH")])
    wait = fields.Boolean(load_default=True, metadata={
        "description": "false: answer 202 at once with the command's id and Location; its state and reply at "
                       "GET /commands/<id>"})


class SessionSchema(Schema):
    id = fields.String()
    user = fields.String()
    owner = fields.String(dump_only=True, metadata={"description": "the session's owner (its user)"})
    access = fields.String(dump_only=True, metadata={
        "description": "yours: owner (or an admin), or view or control of a session shared with you"})
    label = fields.String(allow_none=True)
    status = fields.String()
    idle_timeout = fields.Integer()
    created_at = Timestamp()
    last_activity = Timestamp()
    expires_at = Timestamp()
    ended_at = Timestamp()
    end_reason = fields.String(allow_none=True)
    pending_reason = fields.String(allow_none=True)     # starting: why its job waits in a queue
    chimerax_version = fields.String(allow_none=True)   # the release its ChimeraX runs, while it runs


class AdminSessionSchema(SessionSchema):
    pid = fields.Integer(allow_none=True)       # a process on this host
    process = fields.String(allow_none=True)    # its launcher's name for it: a pid, a job
    port = fields.Integer(allow_none=True)
    memory_mb = fields.Float(allow_none=True)
    host_id = fields.String(allow_none=True)     # the service instance that started it


class UsageSchema(Schema):
    cpu_seconds = fields.Float(allow_none=True, metadata={"description": "CPU of all its processes so far"})
    memory_bytes = fields.Integer(allow_none=True, metadata={"description": "resident now (live sessions)"})
    memory_peak_bytes = fields.Integer(allow_none=True, metadata={"description": "the most it held"})
    processes = fields.Integer(allow_none=True, metadata={"description": "processes and threads now"})


class LimitsSchema(Schema):
    memory_mb = fields.Integer(allow_none=True)
    address_space_mb = fields.Integer(allow_none=True)
    cpus = fields.Float(allow_none=True)
    processes = fields.Integer(allow_none=True)
    enforced_by = fields.String(allow_none=True, metadata={
        "description": "what holds them: cgroup v2, cgroup v1, slurm, prlimit"})


class SessionDetailSchema(AdminSessionSchema):
    """One session read by id: also what it uses and the limits that hold for it
    (not in lists: each would ask the launcher)."""
    usage = fields.Nested(UsageSchema, metadata={
        "description": "live from its launcher while its process runs; else the last recorded figures"})
    limits = fields.Nested(LimitsSchema, allow_none=True, metadata={
        "description": "while its process runs (null: none, or the launcher cannot tell)"})


class HeartbeatSchema(Schema):
    id = fields.String()
    last_activity = Timestamp()
    expires_at = Timestamp()


class CommandResultSchema(Schema):
    id = fields.String(metadata={"description": "the command's id (GET /commands/<id>; POST /interrupt)"})
    ok = fields.Boolean()
    command = fields.String()
    log = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    json_values = fields.List(fields.Raw())
    error = fields.Dict(allow_none=True)
    duration_ms = fields.Float()


class SceneQuerySchema(Schema):
    """Options of ChimeraX's glTF writer a caller may set (save x.glb ...), bounded."""
    class Meta:
        unknown = RAISE

    center = fields.Boolean(load_default=True)
    size = fields.Float(validate=validate.Range(min=0.001, max=1e6))
    flat_lighting = fields.Boolean(load_default=False)
    preserve_transparency = fields.Boolean(load_default=True)
    backface_culling = fields.Boolean(load_default=True)
    instancing = fields.Boolean(load_default=False)
    metallic_factor = fields.Float(validate=validate.Range(min=0, max=1))
    roughness_factor = fields.Float(validate=validate.Range(min=0, max=1))


class HistoryQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "cxc")))


class HistoryEntrySchema(Schema):
    at = Timestamp()
    command = fields.String()
    verdict = fields.String()       # allow | deny (the command policy's)
    ok = fields.Boolean(allow_none=True)     # None: denied, never ran
    duration_ms = fields.Float(allow_none=True)


class HistorySchema(Schema):
    history = fields.List(fields.Nested(HistoryEntrySchema))
    total = fields.Integer()
    offset = fields.Integer()
    limit = fields.Integer()


# What one snapshot draws: each side bounded, and the three together.
RENDERED = RenderedPixels("RENDER_MAX_PIXELS")


class SnapshotQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    width = fields.Integer(load_default=800, validate=[Between(1, "SNAPSHOT_MAX_PIXELS"), RENDERED.part],
                           metadata={"description": "pixels"})
    height = fields.Integer(load_default=600, validate=[Between(1, "SNAPSHOT_MAX_PIXELS"), RENDERED.part],
                            metadata={"description": "pixels"})
    supersample = fields.Integer(load_default=3, validate=[Between(1, "SNAPSHOT_MAX_SUPERSAMPLE"), RENDERED.part],
                                 metadata={"description": "ChimeraX draws the image supersample² times "
                                                          "(shifted by a fraction of a pixel) and averages them"})

    @validates_schema(skip_on_field_errors=True)
    def _rendered_pixels(self, data, **kwargs):
        RENDERED.check(data["width"], data["height"], data["supersample"])


class FormBoolean(fields.Boolean):
    """true/false as multipart form text."""
    truthy = {"true"}
    falsy = {"false"}


class SessionCreateFormSchema(SessionCreateSchema):
    """The same fields sent as multipart/form-data beside a `file` part."""
    idle_timeout = fields.Integer(validate=Between(
        "SESSION_IDLE_TIMEOUT_MIN", "SESSION_IDLE_TIMEOUT_MAX", " seconds"))
    wait = FormBoolean(load_default=True)  # type: ignore[assignment]  # the form's text, not JSON's
    file = Upload(metadata={"description": "a structure or map to open (see the file part's name rule)"})


class FileSchema(Schema):
    name = fields.String()
    size = fields.Integer()
    modified = Timestamp()


class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(AdminSessionSchema), metadata={"description": "newest first"})
    has_more = fields.Boolean(metadata={"description": "whether older sessions follow (ask with starting_after)"})


class FileListSchema(Schema):
    files = fields.List(fields.Nested(FileSchema))


class UploadSchema(Schema):
    class Meta:
        unknown = RAISE

    file = Upload(required=True)


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", metadata={"description": "per-field messages (400)"})
    request_id = fields.String(required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class HealthSchema(Schema):
    status = fields.String()
    checks = fields.Dict()
