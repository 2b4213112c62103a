"""The OpenAPI document (flask-smorest builds it from the routes' declarations,
with this app's configuration) and a Swagger UI page from the
flask-swagger-ui package's own files: no CDN."""
from flask_swagger_ui import get_swaggerui_blueprint

from . import admin, commands, health, metrics, sessions, shares, tokens, usage, web, webhooks
from .api import Api

DESCRIPTION = ("Per-user headless ChimeraX sessions. Errors always have the shape "
               "{\"error\": {code, message, fields?, request_id}}; 429 and 503 say when to retry "
               "(Retry-After).")


def init_app(app):
    app.config.update(API_TITLE="ChimeraX session service", API_VERSION="0.1.0", OPENAPI_VERSION="3.0.3",
                      OPENAPI_URL_PREFIX="/api", OPENAPI_JSON_PATH="openapi.json",
                      API_SPEC_OPTIONS={"info": {"description": DESCRIPTION},
                                        "security": [{"bearer": []}, {"apiKey": []}]})
    api = Api(app)
    for module in (health, sessions, commands, shares, tokens, admin, webhooks, usage, metrics):
        api.register_blueprint(module.bp)
    app.register_blueprint(web.bp)          # pages, not API: outside the document
    # Swagger UI at /api/docs, reading /api/openapi.json (public, like the document).
    app.register_blueprint(get_swaggerui_blueprint("/api/docs", "/api/openapi.json",
                                                   config={"app_name": "ChimeraX sessions API"}))
    return api
