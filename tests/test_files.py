"""Workspace files and snapshots against the real runtime."""
import os

import pytest

from .conftest import alanin_pdb, token_header
from .helpers import distinct_colours, new_session, run, upload

pytestmark = pytest.mark.slow


def test_allowed_workflow_end_to_end(client, alice, tmp_path):
    url = new_session(client, alice)
    pdb = open(alanin_pdb(), "rb").read()
    stored = upload(client, alice, url, "alanin.pdb", pdb)
    assert stored.status_code == 201 and stored.get_json()["size"] == len(pdb)

    assert run(client, alice, url, "open alanin.pdb")["ok"]
    assert run(client, alice, url, "style stick; color byelement; cartoon")["ok"]

    snap = client.get(url + "/snapshot?width=320&height=240&supersample=2", headers=alice)
    assert snap.status_code == 200 and snap.mimetype == "image/png"
    (tmp_path / "snap.png").write_bytes(snap.data)
    width, height, colours = distinct_colours(tmp_path / "snap.png")
    assert (width, height) == (320, 240) and colours > 100       # a real render, not a blank frame

    assert run(client, alice, url, "save copy.cif")["ok"]
    names = {f["name"]: f for f in client.get(url + "/files", headers=alice).get_json()["files"]}
    assert set(names) == {"alanin.pdb", "copy.cif"}               # log and scratch stay hidden
    assert names["copy.cif"]["size"] > 1000 and names["copy.cif"]["modified"]

    download = client.get(url + "/files/copy.cif", headers=alice)
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    assert b"_atom_site" in download.data

    assert run(client, alice, url, "close")["ok"]
    assert run(client, alice, url, "open copy.cif")["ok"]
    assert any("66 atoms" in m for m in run(client, alice, url, "measure center #1")["log"]["note"])

    assert client.delete(url + "/files/copy.cif", headers=alice).status_code == 204
    assert client.get(url + "/files/copy.cif", headers=alice).status_code == 404


def test_upload_limits_names_and_quota(app_factory):
    app = app_factory(MAX_UPLOAD_BYTES=4096, WORKSPACE_QUOTA_MB=1)
    client = app.test_client()
    alice = token_header(app, "alice")
    url = new_session(client, alice)

    too_big = upload(client, alice, url, "big.pdb", b"x" * 10000)
    assert too_big.status_code == 413 and too_big.get_json()["error"]["code"] == "payload_too_large"
    for name in ("evil.py", "x.cxc", "../x.pdb", ".hidden.pdb", "a b.pdb", "chimerax.log", "x" * 200 + ".pdb"):
        response = upload(client, alice, url, name, b"data")
        assert response.status_code == 400, name
        assert response.get_json()["error"]["code"] in ("bad_file", "validation_error")
    plain = client.post(url + "/files", data=b"x", headers=alice, content_type="application/octet-stream")
    assert plain.status_code == 415

    app.config["MAX_UPLOAD_BYTES"] = 700 * 1024
    assert upload(client, alice, url, "a.pdb", b"x" * 600 * 1024).status_code == 201
    over_quota = upload(client, alice, url, "b.pdb", b"x" * 600 * 1024)
    assert over_quota.status_code == 413 and over_quota.get_json()["error"]["code"] == "quota_exceeded"
    assert [f["name"] for f in client.get(url + "/files", headers=alice).get_json()["files"]] == ["a.pdb"]
    # replacing a file counts only the difference
    assert upload(client, alice, url, "a.pdb", b"y" * 650 * 1024).status_code == 201


def test_other_users_and_ended_sessions(app, client, alice, bob):
    url = new_session(client, alice)
    assert upload(client, alice, url, "mine.pdb", b"ATOM").status_code == 201
    for method, path in (("get", "/files"), ("get", "/files/mine.pdb"), ("delete", "/files/mine.pdb"),
                         ("get", "/snapshot")):
        assert getattr(client, method)(url + path, headers=bob).status_code == 403
    assert upload(client, bob, url, "theirs.pdb", b"ATOM").status_code == 403

    workspace = app.extensions["chimerax_sessions"].new_store().get_session(url.rsplit("/", 1)[1]).workspace
    assert client.delete(url, headers=alice).status_code == 204
    assert not os.path.exists(workspace)
    gone = client.get(url + "/files/mine.pdb", headers=alice)
    assert gone.status_code == 409 and gone.get_json()["error"]["code"] == "session_not_active"


@pytest.mark.parametrize("query", ["width=0", "height=100000", "supersample=9", "width=abc", "colour=red"])
def test_snapshot_bounds(client, alice, query):
    url = new_session(client, alice)
    response = client.get(url + "/snapshot?" + query, headers=alice)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "validation_error"


def test_snapshot_without_offscreen_rendering_is_503(app_factory):
    app = app_factory(CHIMERAX_OFFSCREEN="false")
    client = app.test_client()
    alice = token_header(app, "alice")
    url = new_session(client, alice)
    response = client.get(url + "/snapshot?width=50&height=50", headers=alice)
    assert response.status_code == 503
    body = response.get_json()["error"]
    assert body["code"] == "rendering_unavailable" and "offscreen" in body["message"]
