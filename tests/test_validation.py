"""Bad input always gets the documented 4xx code in the one error shape.

These never start ChimeraX: validation and routing happen before any session lookup.
"""
import logging
import uuid

import pytest

UNKNOWN_ID = str(uuid.uuid4())


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]


def test_extra_field_is_rejected_by_name(client, alice):
    err = assert_error(client.post("/api/sessions", json={"colour": "red"}, headers=alice),
                       400, "validation_error")
    assert err["fields"] == {"colour": ["Unknown field."]}


@pytest.mark.parametrize("body, field", [
    ({"label": 5}, "label"),
    ({"label": "x" * 101}, "label"),
    ({"idle_timeout": "30"}, "idle_timeout"),
    ({"idle_timeout": 1.5}, "idle_timeout"),
    ({"idle_timeout": 0}, "idle_timeout"),
    ({"idle_timeout": 10**9}, "idle_timeout"),
    ({"wait": "yes"}, "wait"),
    ({"wait": 1}, "wait"),
])
def test_wrong_typed_or_out_of_bounds_create_fields(client, alice, body, field):
    err = assert_error(client.post("/api/sessions", json=body, headers=alice), 400, "validation_error")
    assert list(err["fields"]) == [field]


def test_missing_command_field(client, alice):
    err = assert_error(client.post("/api/sessions/%s/commands" % UNKNOWN_ID, json={}, headers=alice),
                       400, "validation_error")
    assert err["fields"] == {"command": ["Missing data for required field."]}


@pytest.mark.parametrize("command", ["", "   ", 7, None, ["pwd", "runscript x.py"], {"0": "pwd"}])
def test_bad_command_values(client, alice, command):
    err = assert_error(client.post("/api/sessions/%s/commands" % UNKNOWN_ID, json={"command": command},
                                   headers=alice), 400, "validation_error")
    assert "command" in err["fields"]


def test_command_body_missing_entirely(client, alice):
    assert_error(client.post("/api/sessions/%s/commands" % UNKNOWN_ID, headers=alice), 400, "validation_error")


@pytest.mark.parametrize("raw", ["{bad", "[1, 2]", "\"text\"", "{\"label\": }", "\xff\xfe"])
def test_malformed_or_non_object_json(client, alice, raw):
    response = client.post("/api/sessions", data=raw.encode("latin-1"), headers=alice,
                           content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in ("invalid_json", "validation_error")


def test_body_that_is_not_json(client, alice):
    assert_error(client.post("/api/sessions", data="label=x", headers=alice,
                             content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type")


@pytest.mark.parametrize("bad_id", ["nope", "1234", UNKNOWN_ID.upper().replace("-", ""),
                                    "../../etc/passwd", "%00", UNKNOWN_ID + "0"])
def test_non_uuid_ids_are_404(client, alice, bad_id):
    assert_error(client.get("/api/sessions/" + bad_id, headers=alice), 404, "not_found")


def test_unknown_session_is_404(client, alice):
    assert_error(client.get("/api/sessions/" + UNKNOWN_ID, headers=alice), 404, "not_found")
    assert_error(client.delete("/api/sessions/" + UNKNOWN_ID, headers=alice), 404, "not_found")
    assert_error(client.put("/api/sessions/%s/heartbeat" % UNKNOWN_ID, headers=alice), 404, "not_found")


def test_oversize_body_is_413(app, client, alice):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    assert_error(client.post("/api/sessions", data='{"label": "%s"}' % big, headers=alice,
                             content_type="application/json"), 413, "payload_too_large")


def test_unknown_route_is_404(client, alice):
    assert_error(client.get("/api/nothing-here", headers=alice), 404, "not_found")
    assert_error(client.get("/api/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client, alice):
    err_response = client.patch("/api/sessions/" + UNKNOWN_ID, headers=alice)
    assert_error(err_response, 405, "method_not_allowed")
    assert "DELETE" in err_response.headers["Allow"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic YWxpY2U6cHc="},
    {"Authorization": "Bearer "},
    {"X-API-Key": "wrong"},
    {"X-Remote-User": "alice"},          # not from a trusted proxy: ignored
])
def test_bad_or_missing_credentials_are_401(client, headers):
    response = client.get("/api/sessions", headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_bad_query_parameters(client, alice, admin):
    err = assert_error(client.get("/api/sessions?status=sleeping", headers=alice), 400, "validation_error")
    assert "status" in err["fields"]
    err = assert_error(client.get("/api/sessions?colour=red", headers=alice), 400, "validation_error")
    assert err["fields"] == {"colour": ["Unknown field."]}
    err = assert_error(client.get("/api/sessions?status=active&status=napping", headers=admin), 400,
                       "validation_error")
    assert list(err["fields"]["status"]) == ["1"]       # the second value
    for query in ("limit=0", "limit=201", "limit=ten", "starting_after=s001", "starting_after="):
        err = assert_error(client.get("/api/sessions?" + query, headers=alice), 400, "validation_error")
        assert list(err["fields"]) == [query.split("=")[0]], query
    assert_error(client.get("/api/sessions?starting_after=00000000-0000-4000-8000-000000000000", headers=alice),
                 404, "not_found")


def test_user_cannot_list_another_users_sessions(client, alice):
    assert_error(client.get("/api/sessions?user=bob", headers=alice), 403, "forbidden")


def test_request_id_is_echoed_when_valid_and_replaced_when_not(client):
    assert client.get("/api/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/api/health", headers={"X-Request-ID": "bad id;<x>"}).headers["X-Request-ID"]
    assert replaced != "bad id;<x>" and len(replaced) == 32


def test_unexpected_error_is_a_bare_500(app, client, alice, monkeypatch, caplog):
    from app.services.sessions import service as sessions

    def explode(*a, **kw):
        raise RuntimeError("secret internals /etc/shadow")
    monkeypatch.setattr(sessions.SessionService, "list_for", explode)
    logger = logging.getLogger("cxs")
    logger.addHandler(caplog.handler)
    try:
        response = client.get("/api/sessions", headers=alice)
    finally:
        logger.removeHandler(caplog.handler)
    err = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert err["message"] == "internal server error"
    # ...while the server log has the whole story, tied to the request id.
    assert "secret internals" in caplog.text and err["request_id"] in caplog.text


def test_a_form_part_without_a_readable_name_is_a_400(client, alice):
    # Found by schemathesis: werkzeug names such a part None, which once broke the error reply itself.
    body = b'--b0\r\nContent-Disposition: form-data; name="\x7fa\xf1\x9c\x8c\xb0\\"\r\n\r\n{}\r\n--b0--\r\n'
    response = client.post("/api/sessions/%s/files" % UNKNOWN_ID, data=body, headers=alice,
                           content_type="multipart/form-data; boundary=b0")
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize("name", ["a.pdb", "A.PDB", "x_1-2.cif", "9.mmCIF", "m.mrc", "a.b.c.tiff", "a" * 124 + ".pdb",
                                  ".pdb", "pdb", "a.py", "a.pdb.py", "-a.pdb", "a b.pdb", "a/../b.pdb", "a.pdb\n",
                                  "a" * 125 + ".pdb", "é.pdb", "a.pdb1", "a.pdb2", ""])
def test_the_documented_file_name_rule_is_the_enforced_one(name):
    import re

    from app.services.sessions.workspace import FILE_NAME_MAX, FILE_NAME_PATTERN, BadFile, check_name
    # JSON Schema's $ is ECMAScript's: the very end (Python's would also match before a final newline).
    documented = bool(re.search(FILE_NAME_PATTERN.removesuffix("$") + r"\Z", name)) and len(name) <= FILE_NAME_MAX
    try:
        enforced = check_name(name) == name
    except BadFile:
        enforced = False
    assert documented == enforced
