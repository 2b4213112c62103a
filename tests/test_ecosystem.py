"""OpenAPI document, docs page, Prometheus metrics and JSON logs."""
import json
import re
import uuid

from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
import pytest
import requests

from .conftest import token_header, wait_until

UNDOCUMENTED = {"static", "api-docs.openapi_json"}


def test_every_route_is_in_the_valid_openapi_document(app, client):
    spec = client.get("/api/openapi.json").get_json()
    validate(spec)
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED or rule.endpoint.startswith(("swagger_ui.", "web.")):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in spec["paths"].get(path, {}):
                missing.append((method, path))
    assert missing == []
    # the components come from the marshmallow schemas
    create = spec["components"]["schemas"]["SessionCreate"]["properties"]
    assert create["label"]["maxLength"] == 100 and create["wait"]["type"] == "boolean"


def test_no_docstring_holds_openapi_yaml(app):
    from app.controllers import admin, files, health, sessions
    functions = list(app.view_functions.values())
    functions += [f for module in (admin, files, health, sessions) for f in vars(module).values() if callable(f)]
    yaml = [f.__qualname__ for f in functions
            if f.__doc__ and re.search(r"^\s*(---|responses:|parameters:|requestBody:)", f.__doc__, re.M)]
    assert yaml == []


def test_the_document_states_the_running_configuration(app_factory):
    app = app_factory(SNAPSHOT_MAX_PIXELS=1234, SNAPSHOT_MAX_SUPERSAMPLE=2, MAX_COMMAND_LENGTH=77,
                      SESSION_IDLE_TIMEOUT_MIN=5, SESSION_IDLE_TIMEOUT_MAX=600)
    spec = app.test_client().get("/api/openapi.json").get_json()
    snapshot = {p["name"]: p["schema"] for p in
                spec["paths"]["/api/sessions/{session_id}/snapshot"]["get"]["parameters"]}
    assert (snapshot["width"]["maximum"], snapshot["supersample"]["maximum"]) == (1234, 2)
    assert spec["components"]["schemas"]["Command"]["properties"]["command"]["maxLength"] == 77
    idle = spec["components"]["schemas"]["SessionCreate"]["properties"]["idle_timeout"]
    assert (idle["minimum"], idle["maximum"]) == (5, 600)
    # and what is documented is what is enforced, at the bounds
    client, alice = app.test_client(), token_header(app, "alice")
    missing = "/api/sessions/%s/" % uuid.uuid4()
    assert client.get(missing + "snapshot?width=1235", headers=alice).status_code == 400
    assert client.get(missing + "snapshot?width=1234", headers=alice).status_code == 404
    assert client.post(missing + "commands", json={"command": "x" * 78}, headers=alice).status_code == 400
    assert client.post(missing + "commands", json={"command": "x" * 77}, headers=alice).status_code == 404


def test_every_operation_declares_its_errors(client):
    spec = client.get("/api/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            statuses = set(operation["responses"])
            assert "500" in statuses, (method, path)
            if operation.get("security") != [] and path != "/api/openapi.json":
                assert {"401", "403", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= statuses, (method, path)
    for status in ("429", "503"):
        assert spec["components"]["responses"]["Error" + status]["headers"]["Retry-After"]["required"]


def test_docs_page_is_served_without_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200 and b"swagger-ui" in page.data
    external = [u for u in re.findall(rb"""(?:src|href)=["'](https?://[^"']+)""", page.data)]
    assert external == []
    assert client.get("/api/docs/swagger-ui-bundle.js").status_code == 200


@pytest.mark.slow
def test_metrics_under_gunicorn_multiprocess(gunicorn_server):
    server = gunicorn_server(workers=3, SWEEP_INTERVAL=60, METRICS_TOKEN="scrape-secret")
    alice, admin = server.token("alice"), server.token("boss", "admin")

    def scrape(headers):
        response = requests.get(server.url + "/metrics", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def pool_full():        # the default warm pool, POOL_SIZE=2
        return [e.status.value for e in server.pool()] == ["ready", "ready"]

    assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
    assert requests.get(server.url + "/metrics", headers=alice, timeout=10).status_code == 403
    wait_until(pool_full, 60, message="the warm pool to be full")
    before = scrape({"Authorization": "Bearer scrape-secret"})
    # the scraper's token is good for /metrics only
    assert requests.get(server.url + "/api/sessions", headers={"Authorization": "Bearer scrape-secret"},
                        timeout=10).status_code == 401

    sessions = [requests.post(server.url + "/api/sessions", json={}, headers=alice, timeout=60).json()
                for _ in range(2)]
    for s in sessions:          # several requests so that several workers serve them
        requests.post(server.url + "/api/sessions/%s/commands" % s["id"], json={"command": "pwd"},
                      headers=alice, timeout=30)
        requests.post(server.url + "/api/sessions/%s/commands" % s["id"], json={"command": "runscript evil.py"},
                      headers=alice, timeout=30)
    requests.delete(server.url + "/api/sessions/" + sessions[0]["id"], headers=alice, timeout=30)
    wait_until(pool_full, 60, message="the warm pool to be refilled")
    after = scrape(admin)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)
    # Both sessions took a warm process (the pool was full), on whichever worker.
    assert delta("cxs_sessions_created_total", source="pool") == 2
    assert delta("cxs_sessions_created_total", source="cold") == 0
    assert delta("cxs_sessions_ended_total", reason="deleted") == 1
    assert delta("cxs_commands_denied_total", verb="runscript") == 2
    assert delta("cxs_command_seconds_count") == 2
    assert delta("cxs_spawn_seconds_count") == 0           # a session's cold start only
    assert after[("cxs_sessions", (("status", "active"),))] == 1
    assert after[("cxs_sessions", (("status", "terminated"),))] == 1
    assert after[("cxs_pool_processes", (("state", "ready"),))] == 2
    assert after[("cxs_pool_processes", (("state", "starting"),))] == 0


@pytest.mark.slow
def test_json_logs_carry_the_request_id(gunicorn_server):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, LOG_FORMAT="json")
    alice = server.token("alice")
    response = requests.get(server.url + "/api/sessions", headers=dict(alice, **{"X-Request-ID": "trace-42"}),
                            timeout=10)
    assert response.headers["X-Request-ID"] == "trace-42"
    requests.post(server.url + "/api/sessions/00000000-0000-4000-8000-000000000000/commands",
                  json={"command": "runscript x.py"}, headers=dict(alice, **{"X-Request-ID": "trace-43"}),
                  timeout=10)
    entries = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    mine = [e for e in entries if e["request_id"] == "trace-42"]
    assert mine and mine[-1]["logger"] == "cxs.requests" and "GET /api/sessions 200" in mine[-1]["message"]
    assert {"ts", "level", "logger", "pid", "request_id", "message"} <= set(mine[-1])
    assert any(e["request_id"] == "trace-43" for e in entries)
