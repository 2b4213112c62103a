"""URL map for /api/sessions: each route names its controller, nothing more."""
from flask import Blueprint

from ..controllers import files as f
from ..controllers import sessions as c

bp = Blueprint("sessions", __name__, url_prefix="/api/sessions")

bp.add_url_rule("", "create", c.create_session, methods=["POST"])
bp.add_url_rule("", "list", c.list_sessions, methods=["GET"])
bp.add_url_rule("/<session_id>", "get", c.get_session, methods=["GET"])
bp.add_url_rule("/<session_id>", "delete", c.delete_session, methods=["DELETE"])
bp.add_url_rule("/<session_id>/heartbeat", "heartbeat", c.heartbeat, methods=["PUT"])
bp.add_url_rule("/<session_id>/suspend", "suspend", c.suspend_session, methods=["POST"])
bp.add_url_rule("/<session_id>/resume", "resume", c.resume_session, methods=["POST"])
bp.add_url_rule("/<session_id>/commands", "commands", c.run_command, methods=["POST"])

bp.add_url_rule("/<session_id>/files", "files", f.list_files, methods=["GET"])
bp.add_url_rule("/<session_id>/files", "upload", f.upload_file, methods=["POST"])
bp.add_url_rule("/<session_id>/files/<name>", "download", f.download_file, methods=["GET"])
bp.add_url_rule("/<session_id>/files/<name>", "delete_file", f.delete_file, methods=["DELETE"])
bp.add_url_rule("/<session_id>/snapshot", "snapshot", f.snapshot, methods=["GET"])
bp.add_url_rule("/<session_id>/scene.glb", "scene", f.scene, methods=["GET"])
bp.add_url_rule("/<session_id>/history", "history", c.history, methods=["GET"])
