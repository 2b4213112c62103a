"""The 3D scene as glTF and the replayable command history, on the real runtime."""
import io

import pytest
import trimesh

from .conftest import alanin_pdb, token_header
from .helpers import distinct_colours, new_session, png_files, run, upload

pytestmark = pytest.mark.slow


def structure_session(client, headers):
    url = new_session(client, headers)
    with open(alanin_pdb(), "rb") as pdb:
        assert upload(client, headers, url, "alanin.pdb", pdb.read()).status_code == 201
    return url


def test_scene_is_gltf_of_the_cartoon(client, alice):
    url = structure_session(client, alice)
    assert run(client, alice, url, "open alanin.pdb")["ok"]
    assert run(client, alice, url, "hide atoms; cartoon")["ok"]
    scene = client.get(url + "/scene.glb?flat_lighting=true&size=20", headers=alice)
    assert scene.status_code == 200 and scene.mimetype == "model/gltf-binary"
    assert scene.data[:4] == b"glTF" and int.from_bytes(scene.data[4:8], "little") == 2     # glTF 2
    loaded = trimesh.load(io.BytesIO(scene.data), file_type="glb")
    meshes = list(loaded.geometry.values())
    assert meshes and max(len(m.vertices) for m in meshes) > 100          # the cartoon's surface
    size = max(loaded.extents)
    assert 19 < size < 21           # `size 20`: ChimeraX scaled the scene to it
    names = {f["name"] for f in client.get(url + "/files", headers=alice).get_json()["files"]}
    assert names == {"alanin.pdb"}                  # the export leaves nothing in the workspace


@pytest.mark.parametrize("query", ["size=0", "size=abc", "center=maybe", "metallic_factor=2", "colour=red",
                                   "size=1&size=2"])
def test_malformed_scene_query_is_400(client, alice, query):
    url = new_session(client, alice)
    reply = client.get(url + "/scene.glb?" + query, headers=alice)
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "validation_error"


def test_a_scene_over_the_limit_is_413(app_factory):
    app = app_factory(SCENE_MAX_BYTES=1000)
    client = app.test_client()
    alice = token_header(app, "alice")
    url = structure_session(client, alice)
    assert run(client, alice, url, "open alanin.pdb")["ok"]
    reply = client.get(url + "/scene.glb", headers=alice)
    assert reply.status_code == 413 and reply.get_json()["error"]["code"] == "scene_too_large"


def test_history_records_every_command_and_replays_as_a_script(client, alice, bob):
    url = structure_session(client, alice)
    commands = ["open alanin.pdb", "style stick", "runscript evil.py", "color nosuchcolour", "color red",
                "turn y 40", "view"]
    for command in commands:
        client.post(url + "/commands", json={"command": command}, headers=alice)
    history = client.get(url + "/history", headers=alice).get_json()
    assert history["total"] == len(commands) and [e["command"] for e in history["history"]] == commands
    by_command = {e["command"]: e for e in history["history"]}
    assert (by_command["runscript evil.py"]["verdict"], by_command["runscript evil.py"]["ok"]) == ("deny", None)
    assert (by_command["color nosuchcolour"]["verdict"], by_command["color nosuchcolour"]["ok"]) == ("allow", False)
    assert by_command["style stick"]["ok"] is True and by_command["style stick"]["duration_ms"] > 0
    page = client.get(url + "/history?offset=2&limit=2", headers=alice).get_json()
    assert [e["command"] for e in page["history"]] == commands[2:4] and page["total"] == len(commands)
    assert client.get(url + "/history", headers=bob).status_code == 403        # owners only
    assert client.get(url + "/history?limit=0", headers=alice).status_code == 400

    script = client.get(url + "/history?format=cxc", headers=alice)
    assert script.status_code == 200 and script.mimetype == "text/plain"
    lines = [line for line in script.get_data(as_text=True).splitlines() if not line.startswith("#")]
    assert lines == ["open alanin.pdb", "style stick", "color red", "turn y 40", "view"]

    # Replayed line by line in a fresh session with the same file: the same scene.
    before = client.get(url + "/snapshot?width=120&height=90&supersample=1", headers=alice).data
    replay = structure_session(client, alice)
    for line in lines:
        assert run(client, alice, replay, line)["ok"], line
    after = client.get(replay + "/snapshot?width=120&height=90&supersample=1", headers=alice).data
    assert before == after or _close(before, after)
    atoms = [m for m in run(client, alice, replay, "measure center #1")["log"]["note"] if "atoms" in m]
    assert atoms and "66 atoms" in atoms[0]


def _close(png_a, png_b):
    # Same size and colour count within 5 %: rendering is deterministic here, this is slack.
    with png_files(png_a, png_b) as paths:
        a, b = (distinct_colours(p) for p in paths)
    return a[:2] == b[:2] and abs(a[2] - b[2]) <= 0.05 * max(a[2], b[2])


def test_history_is_bounded_per_session(app_factory):
    app = app_factory(HISTORY_MAX=3)
    client = app.test_client()
    alice = token_header(app, "alice")
    url = new_session(client, alice)
    for n in range(5):
        run(client, alice, url, "turn y %d" % (n + 1))
    history = client.get(url + "/history", headers=alice).get_json()
    assert history["total"] == 3 and [e["command"] for e in history["history"]] == ["turn y 3", "turn y 4",
                                                                                    "turn y 5"]
