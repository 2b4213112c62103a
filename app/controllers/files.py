"""HTTP in/out for workspace files, snapshots and scenes."""
import io

from flask import current_app, g, send_file

from ..context import get_session_service
from ..services.sessions.sharing import CONTROL, OWNER, VIEW


def _workspace(session_id, need=OWNER):
    return get_session_service().workspace_for(g.principal, str(session_id), need)


def list_files(session_id):
    return {"files": _workspace(session_id, VIEW).list()}


def upload_file(args, session_id):
    upload = args["file"]
    info = _workspace(session_id, CONTROL).save(upload.filename, upload.stream, current_app.config["MAX_UPLOAD_BYTES"])
    return info, 201


def download_file(session_id, name):
    path = _workspace(session_id, VIEW).path_of(name)
    return send_file(path, as_attachment=True, download_name=name, mimetype="application/octet-stream")


def delete_file(session_id, name):
    _workspace(session_id).delete(name)


def snapshot(args, session_id):
    png = get_session_service().snapshot(g.principal, str(session_id),
                                         args["width"], args["height"], args["supersample"])
    return send_file(io.BytesIO(png), mimetype="image/png", download_name="snapshot.png")


def scene(args, session_id):
    glb = get_session_service().scene(g.principal, str(session_id), args)
    return send_file(io.BytesIO(glb), mimetype="model/gltf-binary", download_name="scene.glb")
