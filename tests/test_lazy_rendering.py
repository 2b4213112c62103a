"""Offscreen rendering starts at a session's first draw (CHIMERAX_OFFSCREEN=lazy,
the default; chimerax_agent/cxs_rendering.py), on the real runtime in its
sandbox: until then the session has not loaded OSMesa or LLVM; what it draws
then is what a session rendering from its start draws."""
import os
import subprocess

import psutil
import pytest

from .conftest import alanin_pdb, sandbox_tree, token_header
from .helpers import RUNTIME_PYTHON, distinct_colours, new_session, run, upload

pytestmark = pytest.mark.slow

RENDERING_LIBRARIES = ("libOSMesa", "libLLVM")
SCENE = ("open alanin.pdb", "style stick; color byelement; cartoon; surface; lighting soft; view; turn y 30")


def rendering_libraries(client, admin, url):
    """The OSMesa and LLVM libraries the session's process tree maps."""
    pid = client.get(url, headers=admin).get_json()["pid"]
    mapped = set()
    for proc in sandbox_tree(pid):
        for region in proc.memory_maps():
            name = os.path.basename(region.path)
            mapped.update(library for library in RENDERING_LIBRARIES if name.startswith(library))
    return mapped


def pss_mib(client, admin, url):
    pid = client.get(url, headers=admin).get_json()["pid"]
    return sum(proc.memory_full_info().pss for proc in sandbox_tree(pid)) / 2**20


def scene_session(client, alice, url):
    upload(client, alice, url, "alanin.pdb", open(alanin_pdb(), "rb").read())
    for line in SCENE:
        assert run(client, alice, url, line)["ok"]


def test_a_session_loads_rendering_at_its_first_draw_and_draws_as_one_that_started_with_it(app_factory, tmp_path):
    lazy_app, eager_app = app_factory(), app_factory(CHIMERAX_OFFSCREEN="true")
    assert lazy_app.config["CHIMERAX_OFFSCREEN"] == "lazy"          # the default
    images = {}
    for name, app in (("lazy", lazy_app), ("eager", eager_app)):
        client, alice, admin = app.test_client(), token_header(app, "alice"), token_header(app, "root", "admin")
        url = new_session(client, alice)
        at_start = rendering_libraries(client, admin, url)
        scene_session(client, alice, url)       # opening, styles, a surface: nothing drawn yet
        before_draw = rendering_libraries(client, admin, url)
        if name == "lazy":
            assert at_start == before_draw == set(), "rendering loaded before anything drew"
            idle = pss_mib(client, admin, url)
        else:
            assert at_start == set(RENDERING_LIBRARIES)
        snap = client.get(url + "/snapshot?width=240&height=180&supersample=2", headers=alice)
        assert snap.status_code == 200 and snap.mimetype == "image/png"
        images[name] = snap.data
        assert rendering_libraries(client, admin, url) == set(RENDERING_LIBRARIES)
        if name == "lazy":
            print("measured: lazy session %.1f MiB PSS before its first draw, %.1f after"
                  % (idle, pss_mib(client, admin, url)))
    for name, data in images.items():
        (tmp_path / (name + ".png")).write_bytes(data)
    assert distinct_colours(tmp_path / "lazy.png")[2] > 100        # a real render, not a blank frame
    assert differing_pixels(tmp_path / "lazy.png", tmp_path / "eager.png") == 0


def differing_pixels(one, other):
    # Pillow lives in the runtime's own environment, not the service's.
    out = subprocess.run([RUNTIME_PYTHON, "-c",
                          "import sys; from PIL import Image, ImageChops; a, b = (Image.open(p).convert('RGB') "
                          "for p in sys.argv[1:]); assert a.size == b.size, (a.size, b.size); "
                          "print(sum(1 for p in ImageChops.difference(a, b).getdata() if max(p)))", str(one),
                          str(other)], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_an_image_saved_by_a_command_is_a_first_draw_too(client, alice, admin, tmp_path):
    url = new_session(client, alice)
    scene_session(client, alice, url)
    assert rendering_libraries(client, admin, url) == set()
    assert run(client, alice, url, "save first.png width 120 height 90")["ok"]
    saved = client.get(url + "/files/first.png", headers=alice)
    assert saved.status_code == 200
    (tmp_path / "first.png").write_bytes(saved.data)
    width, height, colours = distinct_colours(tmp_path / "first.png")
    assert (width, height) == (120, 90) and colours > 50
    assert rendering_libraries(client, admin, url) == set(RENDERING_LIBRARIES)
    assert psutil.pid_exists(client.get(url, headers=admin).get_json()["pid"])


def test_a_first_draw_the_address_space_cannot_hold_is_refused_not_reported_as_missing_rendering(app_factory):
    """The renderer's start takes ~600 MB of address space (llvmpipe's threads
    and their arenas): past SESSION_ADDRESS_SPACE_MB it would fail inside
    OSMesa. The snapshot is refused first, 413 naming the first draw, and the
    session lives on."""
    probe = app_factory()
    client, alice = probe.test_client(), token_header(probe, "alice")
    url = new_session(client, alice)
    launcher = probe.extensions["chimerax_sessions"].launcher
    store = probe.extensions["chimerax_sessions"].new_store()
    try:
        idle = launcher.address_space_bytes(store.get_session(url.rsplit("/", 1)[1]).process)
    finally:
        store.close()
    app = app_factory(SESSION_ADDRESS_SPACE_MB=idle // 2**20 + 200)
    client, alice = app.test_client(), token_header(app, "alice")
    url = new_session(client, alice)
    refused = client.get(url + "/snapshot?width=64&height=64&supersample=1", headers=alice)
    assert refused.status_code == 413, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "scene_too_large" and "first draw" in error["message"], error
    assert run(client, alice, url, "pwd")["ok"]
