"""Render bounds of the API on the real runtime, at the service's defaults
(sandbox, SESSION_MEMORY_MB, SESSION_ADDRESS_SPACE_MB, RENDER_MAX_PIXELS, SCENE_MAX_BYTES, COMMAND_TIMEOUT):
each bound walked at its corners (at it: 200; just over: a 4xx naming it),
the session answering its next command after every case; and the scene
exported in every style a session can show."""
import io
import json
import struct
import uuid

import numpy
import pytest

from app.services.policy import profiles as policy
from app.settings import check_settings
import config

from .conftest import alanin_pdb, token_header

slow = pytest.mark.slow
RENDER_MAX_PIXELS = 4096 * 4096      # config.py's default, asserted below
SIDE = 4096                          # SNAPSHOT_MAX_PIXELS
SUPERSAMPLE = 4                      # SNAPSHOT_MAX_SUPERSAMPLE
LINES, TRIANGLES = 1, 4              # glTF primitive modes


@pytest.fixture
def defaults(app_factory):
    """An app at the service's defaults, but for what a test server needs
    (its own store and folder, no warm pool, no sweeper): tests/conftest.py
    shortens COMMAND_TIMEOUT, put back here, since renders at the bounds are what is tried."""
    app = app_factory(COMMAND_TIMEOUT=30.0)
    assert (app.config["RENDER_MAX_PIXELS"], app.config["SNAPSHOT_MAX_PIXELS"],
            app.config["SNAPSHOT_MAX_SUPERSAMPLE"]) == (RENDER_MAX_PIXELS, SIDE, SUPERSAMPLE) == (
        config.Config.RENDER_MAX_PIXELS, config.Config.SNAPSHOT_MAX_PIXELS, config.Config.SNAPSHOT_MAX_SUPERSAMPLE)
    assert app.config["SESSION_MEMORY_MB"] == 4096 and app.config["SANDBOX"] == "auto"
    return app


class Viewer:
    """A user (the viewer profile) with one session holding `files`."""

    def __init__(self, app, **files):
        self.client, self.headers = app.test_client(), token_header(app, "alice")
        created = self.client.post("/api/sessions", json={}, headers=self.headers)
        assert created.status_code == 201, created.get_json()
        self.url = "/api/sessions/" + created.get_json()["id"]
        for name, data in files.items():
            name = name.replace("_", ".")
            stored = self.client.post(self.url + "/files", headers=self.headers, content_type="multipart/form-data",
                                      data={"file": (io.BytesIO(data), name)})
            assert stored.status_code == 201, stored.get_json()

    def run(self, command):
        reply = self.client.post(self.url + "/commands", json={"command": command}, headers=self.headers)
        assert reply.status_code == 200 and reply.get_json()["ok"], (command, reply.get_json())
        return reply.get_json()

    def get(self, path, **query):
        return self.client.get(self.url + path, query_string=query, headers=self.headers)

    def answers(self):
        """The session runs its next command (its ChimeraX lived through the last case)."""
        return self.run("pwd")["ok"]

    def files(self):
        return {f["name"] for f in self.get("/files").get_json()["files"]}


def pdb():
    with open(alanin_pdb(), "rb") as source:
        return source.read()


def mrc(data, voxel=1.0):
    """An MRC 2014 map of float32 `data` (z, y, x), written here: no data downloaded."""
    data = numpy.ascontiguousarray(data, dtype="<f4")
    nz, ny, nx = data.shape
    words = numpy.zeros(256, dtype="<i4")
    floats = words.view("<f4")
    words[0:3], words[3], words[7:10] = (nx, ny, nz), 2, (nx, ny, nz)      # size, mode 2 (float32), sampling
    floats[10:13], floats[13:16] = (nx * voxel, ny * voxel, nz * voxel), 90.0     # cell
    words[16:19] = (1, 2, 3)                                                # x fastest
    floats[19:22] = data.min(), data.max(), data.mean()
    words[22] = 1                                                           # space group
    header = bytearray(words.tobytes())
    header[208:216] = b"MAP " + bytes((0x44, 0x44, 0, 0))                    # map id, little-endian stamp
    header[216:220] = struct.pack("<f", data.std())
    return bytes(header) + data.tobytes()


def blobs():
    """Two Gaussian blobs on a 24³ grid."""
    z, y, x = numpy.mgrid[0:24, 0:24, 0:24].astype("f4")
    return mrc(numpy.exp(-((x - 8) ** 2 + (y - 12) ** 2 + (z - 12) ** 2) / 18)
               + numpy.exp(-((x - 16) ** 2 + (y - 12) ** 2 + (z - 12) ** 2) / 18))


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def primitives(glb):
    """(mode, vertices, textured) of every primitive of a binary glTF 2 file."""
    assert glb[:4] == b"glTF" and struct.unpack("<I", glb[4:8])[0] == 2
    length, kind = struct.unpack("<I4s", glb[12:20])
    assert kind == b"JSON"
    doc = json.loads(glb[20:20 + length])
    found = []
    for mesh in doc.get("meshes", []):
        for primitive in mesh["primitives"]:
            material = doc["materials"][primitive["material"]] if "material" in primitive else {}
            vertices = doc["accessors"][primitive["attributes"]["POSITION"]]["count"]
            found.append((primitive.get("mode", TRIANGLES), vertices,
                          "baseColorTexture" in material.get("pbrMetallicRoughness", {})))
    return found


def refused_naming(reply, bound):
    body = reply.get_json()["error"]
    assert reply.status_code == 400 and body["code"] == "validation_error", body
    return all(bound in " ".join(messages) for messages in body["fields"].values())


# The snapshot: width and height each at most SNAPSHOT_MAX_PIXELS, supersample
# at most SNAPSHOT_MAX_SUPERSAMPLE, width x height x supersample² at most RENDER_MAX_PIXELS.

AT_THE_BOUNDS = [(800, 600, 3),                      # the default
                 (SIDE, SIDE, 1), (2048, 2048, 2), (1365, 1365, 3), (1024, 1024, SUPERSAMPLE),
                 (SIDE, 1024, 2), (SIDE, 455, 3), (SIDE, 256, SUPERSAMPLE), (1, SIDE, SUPERSAMPLE),
                 (SIDE, 1, SUPERSAMPLE), (1, 1, 1)]
JUST_OVER = [(2049, 2048, 2), (1366, 1365, 3), (1025, 1024, SUPERSAMPLE), (SIDE, 1025, 2), (SIDE, 456, 3),
             (SIDE, 257, SUPERSAMPLE),
             (800, 4095, 3)]        # what the CI run sent: it ended the session's ChimeraX before this bound


def test_the_corners_are_the_bound():
    for width, height, supersample in AT_THE_BOUNDS:
        assert width * height * supersample ** 2 <= RENDER_MAX_PIXELS
    for width, height, supersample in JUST_OVER:
        assert width * height * supersample ** 2 > RENDER_MAX_PIXELS


@slow
def test_snapshots_at_the_bounds_render_and_over_them_are_refused_naming_the_bound(defaults):
    viewer = Viewer(defaults, alanin_pdb=pdb())
    viewer.run("open alanin.pdb")
    viewer.run("show atoms; style stick; cartoon; surface")
    for width, height, supersample in AT_THE_BOUNDS:
        reply = viewer.get("/snapshot", width=width, height=height, supersample=supersample)
        assert reply.status_code == 200, (width, height, supersample, reply.get_json())
        assert reply.mimetype == "image/png" and png_size(reply.data) == (width, height)
        assert viewer.answers()
    for width, height, supersample in JUST_OVER:
        reply = viewer.get("/snapshot", width=width, height=height, supersample=supersample)
        assert refused_naming(reply, "RENDER_MAX_PIXELS (%d)" % RENDER_MAX_PIXELS), (width, height, supersample)
        assert set(reply.get_json()["error"]["fields"]) == {"width", "height", "supersample"}
        assert viewer.answers()
    for query, field in (({"width": SIDE + 1, "height": 1, "supersample": 1}, "width"),
                         ({"width": 1, "height": SIDE + 1, "supersample": 1}, "height"),
                         ({"width": 1, "height": 1, "supersample": SUPERSAMPLE + 1}, "supersample"),
                         ({"width": 0}, "width")):
        reply = viewer.get("/snapshot", **query)
        assert reply.status_code == 400 and set(reply.get_json()["error"]["fields"]) == {field}
        assert viewer.answers()
    assert viewer.files() == {"alanin.pdb"}         # no scratch file left behind


def test_the_document_states_the_render_bound_and_it_follows_the_setting(app_factory):
    app = app_factory(RENDER_MAX_PIXELS=640 * 480 * 4)
    client, alice = app.test_client(), token_header(app, "alice")
    operation = client.get("/api/openapi.json").get_json()["paths"]["/api/sessions/{session_id}/snapshot"]["get"]
    assert "at most %d (RENDER_MAX_PIXELS)" % (640 * 480 * 4) in operation["description"]
    for parameter in operation["parameters"]:
        assert "RENDER_MAX_PIXELS (%d)" % (640 * 480 * 4) in parameter["description"], parameter
    missing = "/api/sessions/%s/snapshot" % uuid.uuid4()         # validated before the session is looked up
    assert client.get(missing + "?width=640&height=480&supersample=2", headers=alice).status_code == 404
    assert refused_naming(client.get(missing + "?width=641&height=480&supersample=2", headers=alice),
                          "RENDER_MAX_PIXELS (%d)" % (640 * 480 * 4))
    assert refused_naming(client.get(missing + "?width=640&height=480", headers=alice),      # supersample 3
                          "RENDER_MAX_PIXELS")


@pytest.mark.parametrize("name", ["RENDER_MAX_PIXELS", "SNAPSHOT_MAX_PIXELS", "SNAPSHOT_MAX_SUPERSAMPLE"])
def test_a_bound_of_zero_stops_the_start_naming_it(name):
    settings = {k: v for k, v in vars(config.Config).items() if k.isupper()}
    settings[name] = 0
    with pytest.raises(config.ConfigError, match="%s=0 must be greater than 0" % name):
        check_settings(settings, policy.default_profiles())


# The scene: every style a session can show exports.

MAP_STYLES = {
    "surface": ("volume #1 style surface", lambda p: any(m == TRIANGLES and n > 100 for m, n, _ in p)
                and LINES not in {m for m, _, _ in p}),
    "mesh": ("volume #1 style mesh", lambda p: any(m == LINES and n > 100 for m, n, _ in p)),
    "image": ("volume #1 style image", lambda p: any(m == TRIANGLES for m, _, _ in p)),
    "solid": ("volume #1 style solid", lambda p: any(m == TRIANGLES for m, _, _ in p)),
    "full region 3d": ("volume #1 style image imageMode 'full region' projectionMode 3d",
                       lambda p: any(m == TRIANGLES for m, _, _ in p)),
    "tilted slab": ("volume #1 style image imageMode 'tilted slab'", lambda p: len(p) >= 1),
    "maximum intensity": ("volume #1 style image maximumIntensityProjection true",
                          lambda p: any(m == TRIANGLES for m, _, _ in p)),
}
# Planes drawn with 2D textures: ChimeraX's glTF writer reads each texture back
# and then calls done_current() on the OpenGL context, which ChimeraX's offscreen
# (OSMesa) context lacks, official builds included; the agent gives it a no-op
# one (chimerax_agent/agent.py, complete_offscreen_context).
TEXTURED_STYLES = {
    "orthoplanes": ("volume #1 style image imageMode orthoplanes",
                    lambda p: sum(textured for _, _, textured in p) == 3),
    "box faces": ("volume #1 style image imageMode 'box faces'", lambda p: sum(textured for _, _, textured in p) == 6),
    "one plane": ("volume #1 style image planes z,12", lambda p: any(textured for _, _, textured in p)),
    "full region 2d": ("volume #1 style image imageMode 'full region' projectionMode 2d-z",
                       lambda p: any(textured for _, _, textured in p)),
}
STRUCTURE_STYLES = {
    "cartoon": ("hide atoms; cartoon", lambda p: len(p) == 1 and p[0][0] == TRIANGLES and p[0][1] > 1000),
    "sticks": ("cartoon hide; show atoms; style stick", lambda p: len(p) >= 2),
    "spheres": ("cartoon hide; show atoms; style sphere", lambda p: len(p) >= 1),
    "ball and stick": ("cartoon hide; show atoms; style ball", lambda p: len(p) >= 2),
    "molecular surface": ("hide atoms; cartoon hide; surface", lambda p: len(p) == 1 and p[0][1] > 1000),
    "surface mesh": ("hide atoms; cartoon hide; surface; surface style mesh",
                     lambda p: len(p) == 1 and p[0][0] == LINES),
    "everything": ("show atoms; style stick; cartoon; surface; transparency 50", lambda p: len(p) >= 4),
}


def _exports(app, opening, command, shows):
    viewer = Viewer(app, blobs_mrc=blobs(), alanin_pdb=pdb())
    viewer.run("open " + opening)
    viewer.run(command)
    scene = viewer.get("/scene.glb")
    assert scene.status_code == 200, scene.get_json()
    assert scene.mimetype == "model/gltf-binary"
    found = primitives(scene.data)
    assert shows(found), found
    assert viewer.answers()
    assert viewer.files() == {"blobs.mrc", "alanin.pdb"}
    return found


@slow
@pytest.mark.parametrize("style", sorted(MAP_STYLES))
def test_a_map_exports_in_each_style(defaults, style):
    _exports(defaults, "blobs.mrc", *MAP_STYLES[style])


@slow
@pytest.mark.parametrize("style", sorted(TEXTURED_STYLES))
def test_a_map_shown_as_textured_planes_exports(defaults, style):
    _exports(defaults, "blobs.mrc", *TEXTURED_STYLES[style])


@slow
@pytest.mark.parametrize("style", sorted(STRUCTURE_STYLES))
def test_a_structure_exports_in_each_style(defaults, style):
    _exports(defaults, "alanin.pdb", *STRUCTURE_STYLES[style])


@slow
def test_a_style_changed_since_the_last_frame_is_what_exports(defaults):
    # A headless ChimeraX applies a map's new style at its next frame: the
    # service runs one, so the mesh exported is the mesh just asked for.
    viewer = Viewer(defaults, blobs_mrc=blobs())
    viewer.run("open blobs.mrc")
    exported = {}
    for style in ("surface", "mesh", "surface"):
        viewer.run("volume #1 style " + style)
        reply = viewer.get("/scene.glb")
        assert reply.status_code == 200, reply.get_json()
        exported.setdefault(style, []).append({m for m, _, _ in primitives(reply.data)})
    assert exported == {"surface": [{TRIANGLES}, {TRIANGLES}], "mesh": [{LINES}]}


# The scene's bounds: SCENE_MAX_BYTES on the file, and, before ChimeraX builds it,
# 12 bytes a shown triangle (its indices alone) without instancing.

@slow
def test_scene_bound_corners(app_factory, defaults):
    viewer = Viewer(defaults, alanin_pdb=pdb())
    viewer.run("open alanin.pdb")
    viewer.run("show atoms; style stick; cartoon")
    size = len(viewer.get("/scene.glb").data)

    def scene_at(limit):
        # Another app on the same store and processes, configured with `limit`.
        app = app_factory(COMMAND_TIMEOUT=30.0, SCENE_MAX_BYTES=limit)
        reply = app.test_client().get(viewer.url + "/scene.glb", headers=viewer.headers)
        assert viewer.answers()
        return reply

    refused = scene_at(1).get_json()["error"]
    assert refused["code"] == "scene_too_large" and "SCENE_MAX_BYTES (1)" in refused["message"]
    triangles = int(refused["message"].split("shows ")[1].split(" triangles")[0])
    assert 12 * triangles < size            # the triangle bound is the lesser: both corners can be walked

    at = scene_at(size)
    assert at.status_code == 200 and len(at.data) == size
    over = scene_at(size - 1)
    assert over.status_code == 413 and over.get_json()["error"]["code"] == "scene_too_large"
    assert "the scene is %d bytes" % size in over.get_json()["error"]["message"]

    at = scene_at(12 * triangles)           # passes the triangle bound; refused on its size
    assert at.status_code == 413 and "the scene is %d bytes" % size in at.get_json()["error"]["message"]
    over = scene_at(12 * triangles - 1)
    assert over.status_code == 413 and "shows %d triangles" % triangles in over.get_json()["error"]["message"]
    assert viewer.files() == {"alanin.pdb"}


@slow
def test_a_scene_too_large_is_refused_before_it_is_built(defaults):
    # Noise shown at its mean: a surface of millions of triangles, over 150 MB
    # as glTF. Refused from its triangle count, without building the file
    # (which takes several times its size in memory), and the session goes on.
    noise = numpy.random.default_rng(29).standard_normal((128, 128, 128))
    viewer = Viewer(defaults, noise_mrc=mrc(noise))
    viewer.run("open noise.mrc")
    viewer.run("volume #1 style surface level 0")
    reply = viewer.get("/scene.glb")
    body = reply.get_json()["error"]
    assert reply.status_code == 413 and body["code"] == "scene_too_large" and "triangles" in body["message"]
    assert "SCENE_MAX_BYTES (%d)" % defaults.config["SCENE_MAX_BYTES"] in body["message"]
    assert viewer.answers()
    assert viewer.files() == {"noise.mrc"}
    viewer.run("volume #1 level 3")           # a few voxels over 3 sigma: a small scene again
    assert viewer.get("/scene.glb").status_code == 200


@slow
def test_the_scene_options_at_their_bounds_export(defaults):
    viewer = Viewer(defaults, blobs_mrc=blobs(), alanin_pdb=pdb())
    viewer.run("open alanin.pdb")
    viewer.run("open blobs.mrc")
    viewer.run("show atoms; style ball; cartoon; surface #1; transparency #1 50; volume #2 style mesh")
    switches = ("center", "flat_lighting", "preserve_transparency", "backface_culling", "instancing")
    numbers = [{"size": 1e6, "metallic_factor": 1, "roughness_factor": 0},
               {"size": 0.001, "metallic_factor": 0, "roughness_factor": 1}]
    for n in range(2 ** len(switches)):         # every combination of the switches
        query = {name: "true" if n >> bit & 1 else "false" for bit, name in enumerate(switches)}
        query.update(numbers[n % 2])
        reply = viewer.get("/scene.glb", **query)
        assert reply.status_code == 200, (query, reply.get_json())
        assert primitives(reply.data) and viewer.answers()
    for query in ({"size": 1.1e6}, {"size": 0.0009}, {"metallic_factor": 1.01}, {"roughness_factor": -0.01}):
        assert viewer.get("/scene.glb", **query).status_code == 400
    assert viewer.answers()


@slow
@pytest.mark.parametrize("setting", ["SESSION_ADDRESS_SPACE_MB", "SESSION_MEMORY_MB"])
def test_a_snapshot_that_would_exceed_the_sessions_memory_is_refused_before_it_is_drawn(app_factory, setting):
    """Either memory limit ends a render the hard way: past the address space
    the allocation fails inside OSMesa (ending ChimeraX), past the cgroup's
    memory the kernel ends the session. A session already near either is
    refused a large snapshot with 413 naming the limit, still draws a small
    one, and lives."""
    probe = app_factory(COMMAND_TIMEOUT=30.0)
    viewer = Viewer(probe)
    # What an idle session uses once it has drawn: its renderer started (CHIMERAX_OFFSCREEN=lazy).
    assert viewer.get("/snapshot", width=64, height=64, supersample=1).status_code == 200
    store = probe.extensions["chimerax_sessions"].new_store()
    try:
        record = store.get_session(viewer.url.rsplit("/", 1)[1])
    finally:
        store.close()
    launcher = probe.extensions["chimerax_sessions"].launcher
    if setting == "SESSION_ADDRESS_SPACE_MB":
        idle = launcher.address_space_bytes(record.process)
    else:
        if launcher.limits_in_force(record.process)["enforced_by"] == "prlimit":
            pytest.skip("no per-session cgroup on this host: SESSION_MEMORY_MB is the address-space limit")
        idle = launcher.usage(record.process)["memory_bytes"]
    assert idle and idle < 4096 * 2**20
    # A limit 300 MB above what an idle session that has drawn uses: a 4096 x 4096 render needs about 512 MB.
    # (the other limit out of the way: the address space's default follows SESSION_MEMORY_MB)
    other = {} if setting == "SESSION_ADDRESS_SPACE_MB" else {"SESSION_ADDRESS_SPACE_MB": 16384}
    app = app_factory(COMMAND_TIMEOUT=30.0, **{setting: idle // 2**20 + 300}, **other)
    near = Viewer(app, alanin_pdb=pdb())
    near.run("open alanin.pdb")
    refused = near.get("/snapshot", width=SIDE, height=SIDE, supersample=1)
    assert refused.status_code == 413, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "scene_too_large" and setting in error["message"]
    assert "needs about" in error["message"]       # refused before drawing, not a failed allocation
    assert near.answers()
    small = near.get("/snapshot", width=320, height=240, supersample=2)
    assert small.status_code == 200 and png_size(small.data) == (320, 240)
