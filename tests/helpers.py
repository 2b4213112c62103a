"""Helpers several test modules share (no test module imports another):
sessions driven through the Flask test client, the store and the sweeper of
an app, owners that are gone, images checked with the runtime's own Pillow,
and the policy's bypass corpus."""
import contextlib
import io
import os
import subprocess
import sys
import tempfile

import psutil

from app.context import EXTENSION
from app.services.processes.locate import PROJECT_ROOT
from app.services.upkeep.owners import MACHINE, Owner

RUNTIME_PYTHON = os.path.join(PROJECT_ROOT, ".chimerax", "venv", "bin", "python")
OUTSIDE = "/tmp/cxs-policy-escape"       # nothing may ever be written here


def row(app, sid):
    """A session's row, read from the app's store."""
    store = app.extensions[EXTENSION].new_store()
    try:
        return store.get_session(sid)
    finally:
        store.close()


def sweep(app, now=None):
    """One sweep of the app's sweeper (`now`: an injected clock)."""
    sweeper, close = app.extensions[EXTENSION].make_sweeper()
    try:
        return sweeper.sweep(now=now)
    finally:
        close()


def gone_owner():
    """An owner that was a real process of this machine and has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return str(Owner(MACHINE, proc.pid, started))


def new_session(client, headers):
    response = client.post("/api/sessions", json={}, headers=headers)
    assert response.status_code == 201
    return "/api/sessions/" + response.get_json()["id"]


def run(client, headers, url, command):
    reply = client.post(url + "/commands", json={"command": command}, headers=headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def upload(client, headers, url, name, data):
    return client.post(url + "/files", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name)})


@contextlib.contextmanager
def png_files(*images):
    """Paths of temporary files holding `images` (PNG bytes), removed afterwards."""
    paths = []
    try:
        for data in images:
            handle, path = tempfile.mkstemp(suffix=".png")
            paths.append(path)
            os.write(handle, data)
            os.close(handle)
        yield paths
    finally:
        for path in paths:
            os.unlink(path)


def distinct_colours(png):
    # Pillow lives in the runtime's own environment, not the service's.
    out = subprocess.run([RUNTIME_PYTHON, "-c",
                          "import sys; from PIL import Image; im = Image.open(sys.argv[1]);"
                          "print(im.size[0], im.size[1], len(set(im.convert('RGB').getdata())))", str(png)],
                         capture_output=True, text=True, check=True)
    width, height, colours = map(int, out.stdout.split())
    return width, height, colours



# Database fetches: through the service's broker when ALLOW_FETCH (tests/test_fetch.py), refused when off.
FETCHES = ["open 1abc", "open pdb:1abc", "open 1abc format mmcif", "open 1080 from emdb", "open alphafold:P69905"]
CORPUS = [
    # dangerous commands, spelled out, abbreviated, cased
    "runscript evil.py", "runsc evil.py", "runs evil.py", "run evil.py", "r evil.py", "RUNSCRIPT evil.py",
    "Runscript evil.py", "shell", "she", "pip install requests", "pi install x", "toolshed install x",
    "tools", "devel build .", "cd /", "cd ..", "c /", "alias evil runscript evil.py", "ali evil pwd",
    "perframe \"runscript evil.py\"", "remotecontrol rest start port 1234", "remote rest start",
    "exit", "ex", "quit", "q", "log save %s/log.html" % OUTSIDE, "movie record", "debug sdump x",
    "defattr evil.defattr", "~runscript x", "~alias evil", "unknowncommand",
    # chaining and separators
    "pwd; runscript evil.py", "pwd ;runscript evil.py", "pwd;;runscript evil.py", "pwd\nrunscript evil.py",
    "pwd\rrunscript evil.py", "pwd\trunscript evil.py", "pwd\x00", "pwd\u2028runscript evil.py",
    "pwd\u0085runscript evil.py", "# comment; runscript evil.py", "  ; shell", "pwd # c; runscript evil.py",
    "style stick; cd /", "view; exit",
    # look-alikes and invisible characters
    "\uff52\uff55\uff4e\uff53\uff43\uff52\uff49\uff50\uff54 evil.py", "runscr\u0456pt evil.py",
    "run\u200bscript evil.py", "open\u00a0evil.py", "\u202eyp.live tpircsnur", "ｏｐｅｎ x.pdb",
    # quoting: doubled, mixed, backslashes, unterminated
    "open \"evil.py\"", "open 'x.pdb' format 'python'", "open \"a;runscript evil.py\"", "open \"unterminated",
    "'runscript' evil.py", "\"shell\"",
    'info models #1 attribute "x"" saveFile "%s/a.txt"' % OUTSIDE,
    "info models #1 attribute 'x'\" saveFile %s/b.txt" % OUTSIDE,
    'info models #1 attribute "x\\" saveFile %s/c.txt"' % OUTSIDE,
    "save \"a b\\\".pdb\"", "save a\\ b.pdb", "save ..\\\\x.pdb", "save \"..\"/x.pdb",
    # keyword tricks: abbreviations, case, before positional arguments, file keywords of any command
    "open x.pdb format python", "open x.pdb form python", "open x.pdb fo py", "open x.pdb format cmd",
    "open x.pdb format PYTHON", "open x.pdb format cxc", "open x.pdb x.py", "open x.pdb name a x.py",
    "save x.pdb format python", "save evil.py", "save evil.cxc", "save evil.cxs",
    "save evil.html", "open evil.cxc", "open evil.cxs", "open evil.pyc", "open evil.py",
    "info models saveFile %s/info.txt" % OUTSIDE, "info models savef %s/x" % OUTSIDE,
    "info models s %s/x" % OUTSIDE, "info models SAVEFILE %s/x" % OUTSIDE, "info saveFile %s/x models" % OUTSIDE,
    "info models saveFile out.txt", "info models saveFile ../out.pdb",
    "measure convexity #1 writeSurfaceData %s/x" % OUTSIDE, "meas convexity #1 w %s/x" % OUTSIDE,
    # paths
    "open /etc/passwd", "open %s/x.pdb" % OUTSIDE, "open ../x.pdb", "open ./../x.pdb", "open ~/x.pdb",
    "open ~root/x.pdb", "save /tmp/x.pdb", "save %s/x.pdb" % OUTSIDE, "save ../x.pdb", "save ~/x.pdb",
    "save sub/../../x.pdb", "open x.pdb\x00.png", "open .hidden.pdb",
    "open %2e%2e/x.pdb", "open C:\\x.pdb", "save \\\\host\\share\\x.pdb",
    # URLs and databases (server-side request forgery)
    "open http://127.0.0.1/x.pdb", "open https://127.0.0.1/x.cif", "open ftp://127.0.0.1/x.pdb",
    "open file:///etc/passwd",
    "info notify start models url http://127.0.0.1:1/x",
    # commands that would run for minutes or take gigabytes
    "save x.png width 20000 height 20000 supersample 4", "save x.png width 100 supersample 64",
    "windowsize 30000 30000", "turn y 1 frames 100000", "wait 100000", "roll y 1 100000",
    "sym #1 group i copies true", "lighting shadows true multiShadow 100000", "surface gridSpacing 0.001",
]
