"""/api/sessions: each operation's contract (what it reads, what it answers)
and the controller that serves it. The first docstring line is its summary."""

from ..controllers import files as f
from ..controllers import sessions as c
from ..middleware.auth import scope
from ..schemas import sessions as s
from ..schemas.commands import CommandStateSchema
from ..services.sessions.workspace import FILE_NAME_MAX, FILE_NAME_PATTERN, FILE_SUFFIXES
from .api import Blueprint

bp = Blueprint("sessions", __name__, url_prefix="/api/sessions",
               description="Sessions, their commands and their workspace files")

BINARY = {"type": "string", "format": "binary"}
FILE_NAME = {"type": "string", "pattern": FILE_NAME_PATTERN, "maxLength": FILE_NAME_MAX,
             "description": "letters, digits, '.', '_' or '-', starting with a letter or digit, ending "
                            "in one of " + " ".join(FILE_SUFFIXES)}
FILE_NAME_PARAMETER = [{"in": "path", "name": "name", "required": True, "schema": FILE_NAME}]
# The file part's name is the workspace file's name: the part's Content-Disposition says it.
FILE_PART = {"file": {"headers": {"Content-Disposition": {
    "description": "the part's filename follows the rule of a workspace file name",
    "schema": {"type": "string", "example": 'form-data; name="file"; filename="structure.pdb"'}}}}}


@bp.route("", methods=["POST"])
@bp.errors(422, 429)
@bp.arguments(s.SessionCreateSchema, location="json", required=False)
@bp.arguments(s.SessionCreateFormSchema, location="multipart", required=False)
@bp.response(201, s.AdminSessionSchema, description="Ready")
@bp.alt_response(202, schema=s.AdminSessionSchema, success=True,
                 description="Starting (wait false, or a scheduler still queues it)")
@bp.doc(requestBody={"content": {"multipart/form-data": {"encoding": FILE_PART}}})
@scope("sessions:write")
def create_session(json_args, form_args):
    """Create a session, optionally opening a structure file sent with it"""
    return c.create_session(json_args, form_args)


@bp.route("", methods=["GET"])
@bp.errors(404)
@bp.arguments(s.SessionListQuerySchema, location="query")
@bp.response(200, s.SessionListSchema)
@scope("sessions:read")
def list_sessions(args):
    """The caller's sessions (admins: everyone's, or one user's)"""
    return c.list_sessions(args)


@bp.route("/<uuid:session_id>", methods=["GET"])
@bp.errors(404)
@bp.response(200, s.SessionDetailSchema)
@scope("sessions:read")
def get_session(session_id):
    """One session, with its usage and limits (process, port and memory for admins only)"""
    return c.get_session(session_id)


@bp.route("/<uuid:session_id>", methods=["DELETE"])
@bp.errors(404)
@bp.response(204)
@scope("sessions:write")
def delete_session(session_id):
    """End a session and stop its process (idempotent)"""
    return c.delete_session(session_id)


@bp.route("/<uuid:session_id>/heartbeat", methods=["PUT"])
@bp.errors(404, 409, 429)       # 409/429: a suspended session resuming on use (AUTO_RESUME)
@bp.response(200, s.HeartbeatSchema)
@scope("sessions:read")
def heartbeat(session_id):
    """Record activity (pushes the idle deadline)"""
    return c.heartbeat(session_id)


@bp.route("/<uuid:session_id>/suspend", methods=["POST"])
@bp.errors(404, 409, 429, 502)
@bp.response(200, s.AdminSessionSchema)
@scope("sessions:write")
def suspend_session(session_id):
    """Save the whole scene, end the process, keep the workspace (status suspended)"""
    return c.suspend_session(session_id)


@bp.route("/<uuid:session_id>/resume", methods=["POST"])
@bp.errors(404, 409, 429)
@bp.response(200, s.AdminSessionSchema, description="Already live")
@bp.alt_response(202, schema=s.AdminSessionSchema, success=True, description="Resuming (status starting)")
@scope("sessions:write")
def resume_session(session_id):
    """Restore a suspended session into a new process (same id, files, models and view)"""
    return c.resume_session(session_id)


@bp.route("/<uuid:session_id>/commands", methods=["POST"])
@bp.errors(404, 409, 429, 502, 504)
@bp.arguments(s.CommandSchema)
@bp.response(200, s.CommandResultSchema, description="ChimeraX's result (ok false: a ChimeraX error)")
@bp.alt_response(202, schema=CommandStateSchema, success=True,
                 description="wait false: started (Location: its resource, GET /commands/<id>)")
@scope("sessions:command")
def run_command(args, session_id):
    """Run a ChimeraX command line (checked by the command policy first)

    With wait false the reply is 202 at once: the command runs on (up to COMMAND_MAX_RUNTIME), its state and
    reply at GET /commands/<id>, the policy's refusal included (status failed, verdict deny).
    """
    return c.run_command(args, session_id)


@bp.route("/<uuid:session_id>/history", methods=["GET"])
@bp.errors(404)
@bp.arguments(s.HistoryQuerySchema, location="query")
@bp.response(200, s.HistorySchema, description="The history (format json)")
@bp.alt_response(200, schema={"type": "string"}, content_type="text/plain", success=True,
                 description="A ChimeraX script of the allowed, successful commands (format cxc)")
@scope("sessions:read")
def history(args, session_id):
    """The session's commands, oldest first"""
    return c.history(args, session_id)


@bp.route("/<uuid:session_id>/files", methods=["GET"])
@bp.errors(404, 409)
@bp.response(200, s.FileListSchema)
@scope("files:read")
def list_files(session_id):
    """Files in the session's workspace"""
    return f.list_files(session_id)


@bp.route("/<uuid:session_id>/files", methods=["POST"])
@bp.errors(404, 409)
@bp.arguments(s.UploadSchema, location="multipart")
@bp.response(201, s.FileSchema)
@bp.doc(requestBody={"content": {"multipart/form-data": {"encoding": FILE_PART}}})
@scope("files:write")
def upload_file(args, session_id):
    """Upload a structure, map or image file (multipart field "file"; replaces one of that name)"""
    return f.upload_file(args, session_id)


@bp.route("/<uuid:session_id>/files/<name>", methods=["GET"], parameters=FILE_NAME_PARAMETER)
@bp.errors(400, 404, 409)
@bp.response(200, BINARY, content_type="application/octet-stream", description="The file")
@scope("files:read")
def download_file(session_id, name):
    """Download a workspace file as an attachment"""
    return f.download_file(session_id, name)


@bp.route("/<uuid:session_id>/files/<name>", methods=["DELETE"], parameters=FILE_NAME_PARAMETER)
@bp.errors(400, 404, 409)
@bp.response(204)
@scope("files:write")
def delete_file(session_id, name):
    """Delete a workspace file"""
    return f.delete_file(session_id, name)


@bp.route("/<uuid:session_id>/snapshot", methods=["GET"])
@bp.errors(404, 409, 413, 502, 504)
@bp.arguments(s.SnapshotQuerySchema, location="query")
@bp.response(200, BINARY, content_type="image/png", description="A PNG rendered offscreen by ChimeraX")
@scope("sessions:read")
def snapshot(args, session_id):
    """A PNG image of the current view

    Each side at most {SNAPSHOT_MAX_PIXELS} pixels (SNAPSHOT_MAX_PIXELS), supersample at most
    {SNAPSHOT_MAX_SUPERSAMPLE} (SNAPSHOT_MAX_SUPERSAMPLE), and what ChimeraX draws, width × height ×
    supersample² pixels, at most {RENDER_MAX_PIXELS} (RENDER_MAX_PIXELS): a request over any of them is
    answered 400 validation_error, its `fields` naming the bound. A view that does not fit in the session's
    memory ({SESSION_MEMORY_MB} MB, SESSION_MEMORY_MB) or its process's address space
    (SESSION_ADDRESS_SPACE_MB) at that size is answered 413 scene_too_large.
    """
    return f.snapshot(args, session_id)


@bp.route("/<uuid:session_id>/scene.glb", methods=["GET"])
@bp.errors(404, 409, 413, 502, 504)
@bp.arguments(s.SceneQuerySchema, location="query")
@bp.response(200, BINARY, content_type="model/gltf-binary", description="Binary glTF")
@scope("sessions:read")
def scene(args, session_id):
    """The current scene as binary glTF (ChimeraX's own writer), for three.js or model-viewer

    Structures, surfaces and maps in every style, as last shown. A scene over {SCENE_MAX_BYTES} bytes
    (SCENE_MAX_BYTES), or showing more than {SCENE_MAX_BYTES} / 12 triangles without `instancing` (each takes
    at least 12 bytes), or that does not fit in the session's memory ({SESSION_MEMORY_MB} MB,
    SESSION_MEMORY_MB) or its process's address space (SESSION_ADDRESS_SPACE_MB), is answered 413
    scene_too_large.
    """
    return f.scene(args, session_id)
