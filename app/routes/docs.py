"""OpenAPI 3 document generated from the marshmallow schemas, and a docs page.

apispec reads each view's docstring (after `---`) for its operation and
turns the schemas it names into components, so the document cannot drift
from the validation the API really applies. Swagger UI is served from the
flask-swagger-ui package's own static files: no CDN.
"""
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, current_app
from flask_swagger_ui import get_swaggerui_blueprint

from ..middleware.auth import public
from ..schemas import sessions as schemas

bp = Blueprint("openapi", __name__, url_prefix="/api")
DOCUMENTED_SCHEMAS = ("SessionCreateSchema", "SessionCreateFormSchema", "SessionListQuerySchema",
                      "AdminSessionSchema", "SessionListSchema", "HeartbeatSchema", "CommandSchema",
                      "CommandResultSchema", "FileSchema", "FileListSchema", "UploadSchema",
                      "SnapshotQuerySchema", "SceneQuerySchema", "HistoryQuerySchema", "HistorySchema",
                      "ErrorSchema", "HealthSchema")


def build_spec(app):
    spec = APISpec(title="ChimeraX session service", version="0.1.0", openapi_version="3.0.3",
                   info={"description": "Per-user headless ChimeraX sessions. Errors always have the "
                                        "shape {\"error\": {code, message, fields?, request_id}}."},
                   plugins=[FlaskPlugin(), MarshmallowPlugin()],
                   security=[{"bearer": []}, {"apiKey": []}])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    for name in DOCUMENTED_SCHEMAS:
        spec.components.schema(name.removesuffix("Schema"), schema=getattr(schemas, name))
    spec.components.response("ErrorResponse", {
        "description": "An error (see the code)",
        "content": {"application/json": {"schema": "ErrorSchema"}}})
    spec.components.parameter("SessionId", "path", {
        "name": "session_id", "required": True, "description": "the session's UUID",
        "schema": {"type": "string", "format": "uuid"}})
    spec.components.parameter("FileName", "path", {
        "name": "name", "required": True, "description": "a workspace file name",
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}})
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            if rule.rule.startswith("/api/sessions") or rule.rule == "/api/health":
                spec.path(view=view, app=app)
            elif rule.endpoint == "metrics.metrics":
                spec.path(view=view, app=app)
    return spec.to_dict()


@public
def openapi_json():
    """The OpenAPI document."""
    cache = current_app.extensions.setdefault("openapi", {})
    if "spec" not in cache:
        cache["spec"] = build_spec(current_app)
    return cache["spec"]


bp.add_url_rule("/openapi.json", "openapi", openapi_json, methods=["GET"])


def docs_blueprint():
    """Swagger UI at /api/docs, reading /api/openapi.json (public, like the document)."""
    return get_swaggerui_blueprint("/api/docs", "/api/openapi.json",
                                   config={"app_name": "ChimeraX sessions API"})
