"""One declaration per error: the handler's status, the API document's error
responses and the docs' table all come from it (fast tier)."""
import os
import re

from app.middleware import errors
from app.middleware.auth import ANY, scope
from app.routes.api import error_responses
from app.services import errors as service_errors

from .conftest import make_config, token_header

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_domain_error_declares_a_code_status_and_when():
    codes = {}
    for cls in service_errors.domain_errors():
        assert cls.code != "error" and 400 <= cls.status < 600 and cls.when, cls
        assert codes.setdefault(cls.code, cls.status) == cls.status, "one code, one status: %s" % cls.code


def test_the_docs_error_table_is_the_generated_one():
    readme = open(os.path.join(ROOT, "docs", "api.md")).read()
    block = re.search(r"<!-- errors:begin.*?-->\n(.*?)\n<!-- errors:end -->", readme, re.S)
    assert block, "docs/api.md lacks the generated error table"
    assert block.group(1) == errors.markdown()


def test_the_document_describes_each_status_with_its_codes(tmp_path):
    from app import create_app
    app = create_app(make_config(tmp_path, CHIMERAX_PATH=""), config_name="testing")
    document = app.test_client().get("/api/openapi.json").get_json()
    responses = document["components"]["responses"]
    for status, (description, _) in error_responses().items():
        if "Error%d" % status in responses:
            assert responses["Error%d" % status]["description"] == description
    assert "`scene_too_large`" in responses["Error413"]["description"]
    assert "Retry-After" in responses["Error503"]["headers"]


def test_a_domain_error_is_answered_with_its_declared_status(tmp_path):
    from app import create_app
    app = create_app(make_config(tmp_path, CHIMERAX_PATH=""), config_name="testing")

    @app.route("/raise/<name>")
    @scope(ANY)
    def raising(name):
        raise getattr(service_errors, name)("as declared", retry_after=7)
    client, alice = app.test_client(), token_header(app, "alice")
    for cls in (service_errors.SceneTooLarge, service_errors.Resuming, service_errors.StoreDown):
        reply = client.get("/raise/" + cls.__name__, headers=alice)
        assert reply.status_code == cls.status and reply.get_json()["error"]["code"] == cls.code
        assert reply.headers["Retry-After"] == "7"
