"""HTTP in/out for workspace files and snapshots."""
import io

from flask import current_app, g, request, send_file

from ..context import get_session_service
from ..middleware.errors import ApiError
from ..middleware.validation import query_args
from ..schemas.sessions import FileSchema, SnapshotQuerySchema
from .sessions import session_id_arg

_files = FileSchema(many=True)
_file = FileSchema()
_snapshot_schema = SnapshotQuerySchema()


def _workspace(session_id):
    return get_session_service().workspace_for(g.principal, session_id_arg(session_id))


def list_files(session_id):
    return {"files": _files.dump(_workspace(session_id).list())}


def upload_file(session_id):
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
    path = _workspace(session_id).path_of(name)
    return send_file(path, as_attachment=True, download_name=name, mimetype="application/octet-stream")


def delete_file(session_id, name):
    _workspace(session_id).delete(name)
    return "", 204


def snapshot(session_id):
    args = query_args(_snapshot_schema)
    png = get_session_service().snapshot(g.principal, session_id_arg(session_id),
                                         args["width"], args["height"], args["supersample"])
    return send_file(io.BytesIO(png), mimetype="image/png", download_name="snapshot.png")
