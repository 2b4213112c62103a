"""Tokens, roles and the trusted-proxy mode (no ChimeraX needed)."""
import sqlite3

from app.services.identity.tokens import hash_token

from .conftest import token_header


def test_tokens_are_stored_only_as_hashes(app):
    header = token_header(app, "alice")
    token = header["Authorization"].split(" ", 1)[1]
    rows = sqlite3.connect(app.config["DATABASE_PATH"]).execute("SELECT token_hash FROM tokens").fetchall()
    assert rows == [(hash_token(token),)]
    assert token not in open(app.config["DATABASE_PATH"], "rb").read().decode("latin-1")


def test_cli_creates_lists_and_revokes(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["tokens", "create", "--user", "dana", "--role", "admin"])
    assert created.exit_code == 0
    token = created.output.strip().splitlines()[-1]
    client = app.test_client()
    assert client.get("/api/sessions?user=anyone", headers={"X-API-Key": token}).status_code == 200
    listing = runner.invoke(args=["tokens", "list"]).output
    token_id = listing.split("\t")[0]
    assert "\tdana\tadmin\tactive" in listing
    assert runner.invoke(args=["tokens", "revoke", token_id]).exit_code == 0
    assert client.get("/api/sessions", headers={"X-API-Key": token}).status_code == 401
    assert runner.invoke(args=["tokens", "revoke", token_id]).exit_code != 0
    assert runner.invoke(args=["tokens", "create", "--user", "x", "--role", "root"]).exit_code != 0


def test_trusted_proxy_user_header(app_factory):
    app = app_factory(TRUSTED_PROXIES=["127.0.0.1"], ADMIN_USERS=["boss"])
    client = app.test_client()
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    assert client.get("/api/sessions", headers={"X-Remote-User": "erin"},
                      environ_base=via_proxy).status_code == 200
    # admin role only for configured users
    assert client.get("/api/sessions?user=erin", headers={"X-Remote-User": "erin"},
                      environ_base=via_proxy).status_code == 200
    assert client.get("/api/sessions?user=frank", headers={"X-Remote-User": "erin"},
                      environ_base=via_proxy).status_code == 403
    assert client.get("/api/sessions?user=frank", headers={"X-Remote-User": "boss"},
                      environ_base=via_proxy).status_code == 200
    # the same header from any other peer is ignored
    assert client.get("/api/sessions", headers={"X-Remote-User": "erin"},
                      environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 401
