"""HTTP in/out for workspace files and snapshots."""
import io

from flask import current_app, g, request, send_file

from ..context import get_session_service
from ..middleware.errors import ApiError
from ..middleware.validation import query_args
from ..schemas.sessions import FileSchema, SceneQuerySchema, SnapshotQuerySchema
from .sessions import session_id_arg

_files = FileSchema(many=True)
_file = FileSchema()
_snapshot_schema = SnapshotQuerySchema()
_scene_schema = SceneQuerySchema()


def _workspace(session_id):
    return get_session_service().workspace_for(g.principal, session_id_arg(session_id))


def list_files(session_id):
    """Workspace files.
    ---
    get:
      summary: Files in the session's workspace
      tags: [files]
      parameters: [SessionId]
      responses:
        200: {description: Files, content: {application/json: {schema: FileListSchema}}}
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
    """
    return {"files": _files.dump(_workspace(session_id).list())}


def upload_file(session_id):
    """Upload a file.
    ---
    post:
      summary: Upload a structure, map or image file (multipart field "file")
      tags: [files]
      parameters: [SessionId]
      requestBody:
        required: true
        content: {multipart/form-data: {schema: UploadSchema}}
      responses:
        201: {description: Stored, content: {application/json: {schema: FileSchema}}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
        413: ErrorResponse
        415: ErrorResponse
    """
    workspace = _workspace(session_id)
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "upload files as multipart/form-data (field 'file')")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ApiError(400, "validation_error", "the request has invalid fields",
                       fields={"file": ["Missing data for required field."]})
    info = workspace.save(upload.filename, upload.stream, current_app.config["MAX_UPLOAD_BYTES"])
    return _file.dump(info), 201


def download_file(session_id, name):
    """Download a file.
    ---
    get:
      summary: Download a workspace file as an attachment
      tags: [files]
      parameters: [SessionId, FileName]
      responses:
        200: {description: The file, content: {application/octet-stream: {schema: {type: string, format: binary}}}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
    """
    path = _workspace(session_id).path_of(name)
    return send_file(path, as_attachment=True, download_name=name, mimetype="application/octet-stream")


def delete_file(session_id, name):
    """Delete a file.
    ---
    delete:
      summary: Delete a workspace file
      tags: [files]
      parameters: [SessionId, FileName]
      responses:
        204: {description: Deleted}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
    """
    _workspace(session_id).delete(name)
    return "", 204


def snapshot(session_id):
    """Snapshot.
    ---
    get:
      summary: A PNG rendered offscreen by ChimeraX
      tags: [files]
      parameters:
      - SessionId
      - in: query
        schema: SnapshotQuerySchema
      responses:
        200: {description: The image, content: {image/png: {schema: {type: string, format: binary}}}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
        413: ErrorResponse
        502: ErrorResponse
        503: ErrorResponse
        504: ErrorResponse
    """
    args = query_args(_snapshot_schema)
    png = get_session_service().snapshot(g.principal, session_id_arg(session_id),
                                         args["width"], args["height"], args["supersample"])
    return send_file(io.BytesIO(png), mimetype="image/png", download_name="snapshot.png")


def scene(session_id):
    """3D scene.
    ---
    get:
      summary: The current scene as binary glTF (ChimeraX's own writer), for three.js or model-viewer
      tags: [files]
      parameters:
      - SessionId
      - in: query
        schema: SceneQuerySchema
      responses:
        200: {description: The scene, content: {model/gltf-binary: {schema: {type: string, format: binary}}}}
        400: ErrorResponse
        401: ErrorResponse
        403: ErrorResponse
        404: ErrorResponse
        409: ErrorResponse
        413: ErrorResponse
        502: ErrorResponse
        503: ErrorResponse
        504: ErrorResponse
    """
    options = query_args(_scene_schema)
    glb = get_session_service().scene(g.principal, session_id_arg(session_id), options)
    return send_file(io.BytesIO(glb), mimetype="model/gltf-binary", download_name="scene.glb")
