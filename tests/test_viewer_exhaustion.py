"""Viewer commands that would exhaust or freeze a session (real runtime, sandboxed).

Each case is a command a viewer may type: it is either refused with a 4xx that
names the bound it crossed, or answered (200, ChimeraX's own result, an error
included), and either way the session answers the next request, a small
snapshot. The cases: the ones measured to end or freeze a session, every
keyword bound of the viewer profile just past its limit and at its limit, the
rules over several arguments, non-finite and absurd numbers, and a command
that runs out of memory (a command error, not a dead session).
"""
import os

import pytest

from app.services.policy import profiles as policy

from .conftest import alanin_pdb, token_header

pytestmark = pytest.mark.slow

LONG_TEXT = "A" * 5000

# How to reach each bounded keyword: a command line of that command with its
# required arguments, the keyword and value put in by {kw} {v}. Model #1 is
# the structure, #1.1 its surface, #2 a 24^3 map.
TEMPLATES = {
    "*": "turn y 1 {kw} {v}",
    "save": "save bound.png {kw} {v}",
    ("windowsize", "width"): "windowsize {v} 100",
    ("windowsize", "height"): "windowsize 100 {v}",
    "lighting": "lighting {kw} {v}",
    "material": "material {kw} {v}",
    ("graphics quality", "quality"): "graphics quality {v}",
    "graphics quality": "graphics quality {kw} {v}",
    "graphics rate": "graphics rate {kw} {v}",
    "graphics silhouettes": "graphics silhouettes {kw} {v}",
    "graphics selection": "graphics selection {kw} {v}",
    "camera": "camera mono {kw} {v}",
    "label": "label #1 residues {kw} {v}",
    "2dlabels": "2dlabels text bound {kw} {v}",
    "2dlabels create": "2dlabels create bound {kw} {v}",
    "2dlabels change": "2dlabels change all {kw} {v}",
    "2dlabels arrow": "2dlabels arrow start 0.1,0.1 end 0.5,0.5 {kw} {v}",
    "distance": "distance #1:1@CA #1:3@CA {kw} {v}",
    "distance style": "distance style {kw} {v}",
    "style": "style #1 {kw} {v}",
    "hbonds": "hbonds #1 {kw} {v}",
    "contacts": "contacts #1 {kw} {v}",
    "clashes": "clashes #1 {kw} {v}",
    "size": "size #1 {kw} {v}",
    "surface": "surface #1 {kw} {v}",
    "surface cap": "surface cap true {kw} {v}",
    "surface smooth": "surface smooth #1.1 {kw} {v}",
    "surface zone": "surface zone #1.1 nearAtoms #1:1 {kw} {v}",
    "color zone": "color zone #1.1 near #1:1 {kw} {v}",
    "volume zone": "volume zone #2 nearAtoms #1:1 {kw} {v}",
    "interfaces": "interfaces #1 {kw} {v}",
    "measure sasa": "measure sasa #1 {kw} {v}",
    "measure buriedarea": "measure buriedarea #1:1-5 withAtoms2 #1:6-10 {kw} {v}",
    "measure convexity": "measure convexity #1.1 {kw} {v}",
    "addh": "addh #1 {kw} {v}",
    "sym": "sym #1 c2 {kw} {v}",
    "volume": "volume #2 {kw} {v}",
    "volume new": "volume new name bound {kw} {v}",
    "volume localCorrelation": "volume localCorrelation #2 #2 {kw} {v}",
    "volume median": "volume median #2 {kw} {v}",
    "volume falloff": "volume falloff #2 {kw} {v}",
    "volume mask": "volume mask #2 surfaces #1.1 {kw} {v}",
    "volume onesmask": "volume onesmask #1.1 onGrid #2 {kw} {v}",
}
# 2D labels need Qt, which this runtime lacks: it registers a stand-in for
# `2dlabels` that refuses to run (a 2D label would spoil every later render
# here). An admin registers ChimeraX's own 2dlabels commands for the test, so
# their keywords parse as in ChimeraX; their bounds are tried past the limit
# only: refused before anything runs.
REGISTER_2DLABELS = """from chimerax.label import arrows, label2d
label2d.register_label_command(session.logger)
arrows.register_arrow_command(session.logger)
"""
NOT_RUN = {"2dlabels", "2dlabels create", "2dlabels change", "2dlabels arrow"}

# Cases measured to end, freeze or break a session before these bounds, and
# what the refusal must name.
MEASURED = [
    ("lighting shadows true multiShadow 1024 msMapSize 16384", "multiShadow"),
    ("lighting shadows true msMapSize 16384", "msMapSize"),
    ("lighting shadows true qualityOfShadows 32768", "qualityOfShadows"),
    ("label #1 residues text " + LONG_TEXT, "text may be at most 100 characters"),
    ("clip near -1e308 far 1e308", "near"),
    ("camera 360 cubePixels 8192", "cubePixels"),
    ("graphics silhouettes true width 1000", "width must be between 0 and 10"),
    ("surface smooth #1.1 iterations 10000000", "iterations"),
    ("surface cap true subdivision 100", "subdivision"),
    ("volume #2 subdivideSurface true subdivisionLevels 6", "subdivisionLevels"),
    ("distance #1:1@CA #1:3@CA decimalPlaces 1000000", "decimalPlaces"),
    ("sym #1 c100000", "copies, over 120"),
    ("label #1 residues text {0.name:>300000000}", "fields may only be"),
]

# Rules over several arguments, numbers and texts: (command, what a refusal
# names, or None for a command that must be allowed).
RULES = [
    ("save bound.png width 4096 height 4096 supersample 4", "RENDER_MAX_PIXELS"),
    ("save bound.png width 4096", "RENDER_MAX_PIXELS"),           # height from the window, supersample 3
    ("save bound.png pixelSize 0.00001", "RENDER_MAX_PIXELS"),
    ("save bound.png width 1024 height 1024 supersample 4", None),
    ("windowsize 4096 4096", None),
    ("save bound.png", "RENDER_MAX_PIXELS"),                      # the window's 4096 x 4096, supersample 3
    ("save bound.png supersample 1", None),
    ("turn y 1 frames 100", "frames of a 4096 x 4096 window"),
    ("windowsize 256 256", None),
    ("turn y 1 frames 100", None),
    ("sym #1 h,3,30,1000", "copies, over 120"),
    ("sym #1 c2*d100", "copies, over 120"),
    ("sym #1 shift,1e9,3", "copies, over 120"),
    ("sym #1 c12", None),
    ("sym #1 clear", None),
    ("label #1 residues text {0.__class__}", "fields may only be"),
    ("label #1 residues text {0.structure.name}", None),
    ("label #1 residues text {0.name:{0.number}}", "fields may only be"),
    ("label #1 residues text {0.name}{0.number:>4}", None),
    ("label #1 residues attribute __class__", "plain attribute name"),
    ("label #1 residues attribute structure._name", "plain attribute name"),
    ("label #1 residues attribute name", None),
    ("label delete", None),
    ("clip near nan", "near must be a finite number"),
    ("clip front inf", "front must be a finite number"),
    ("clip near -5 far 5", None),
    ("clip off", None),
    ("zoom 1e308", "magnitude"),
    ("move x 1e308", "magnitude"),
    ("turn y 1e308", "magnitude"),
    ("turn y nan", "finite"),
    ("turn y 10 center 1e308,0,0", "center"),
    ("cofr fixed pivot 1e308,0,0", "pivot"),
    ("view pad 1e308", "magnitude"),
    ("lighting direction nan,0,0", "direction must be a finite number"),
    ("material exponent inf", "exponent"),
    ("camera fieldOfView inf", "fieldOfView"),
    ("camera mono eyeSeparation 1e308", "magnitude"),
    ("view matrix camera 1,0,0,1e308,0,1,0,0,0,0,1,50", "camera"),
    ("volume #2 level nan", "level must be a finite number"),
    ("volume #2 level 1e7", None),                 # a value of the data: finite is enough
    ("volume #2 level 0.5", None),
    ("graphics quality atomTriangles " + "9" * 400, "atomTriangles"),
    ("lighting qualityOfShadows finer", None),     # ChimeraX's own names pass
    ("lighting qualityOfShadows 16384", "qualityOfShadows"),
    ("lighting simple", None),
]


@pytest.fixture
def viewer(app, client):
    """alice's session: a structure (#1) with its surface (#1.1), and a 24^3 map (#2) an admin
    made; ChimeraX's own 2dlabels commands registered by the admin."""
    alice, admin = token_header(app, "alice"), token_header(app, "boss", "admin")
    with open(alanin_pdb(), "rb") as pdb:
        created = client.post("/api/sessions", headers=alice, content_type="multipart/form-data",
                              data={"file": (pdb, "x.pdb")})
    assert created.status_code == 201, created.get_json()
    session_id = created.get_json()["id"]
    store = app.extensions["chimerax_sessions"].new_store()
    try:
        workspace = store.get_session(session_id).workspace
    finally:
        store.close()
    script = os.path.join(workspace, "labels2d.py")
    with open(script, "w") as out:
        out.write(REGISTER_2DLABELS)
    os.chmod(script, 0o644)
    for command, who in (("volume new name m size 24 gridSpacing 1", admin), ("surface #1", alice),
                         ("runscript labels2d.py", admin)):
        made = run(client, who, session_id, command).get_json()
        assert made["ok"], made
    return client, alice, session_id


def run(client, headers, session_id, command):
    return client.post("/api/sessions/%s/commands" % session_id, json={"command": command}, headers=headers)


def answers(client, headers, session_id):
    """The session answers: a small snapshot, a real PNG."""
    shot = client.get("/api/sessions/%s/snapshot?width=64&height=48&supersample=1" % session_id, headers=headers)
    return shot.status_code == 200 and shot.data.startswith(b"\x89PNG")


def outcome(client, headers, session_id, command, names):
    """None if `command` is answered as expected and the session answers next, else what went wrong.
    `names`: what its refusal must name; None: it must be allowed (ChimeraX's answer, an error included)."""
    response = run(client, headers, session_id, command)
    body = response.get_json()
    said = "%d %s" % (response.status_code, (body.get("error") or {}).get("message", "ok") if body else "")
    wrong = None
    if names is None:
        if response.status_code != 200:
            wrong = said
    elif not (response.status_code == 403 and body["error"]["code"] == "command_denied"
              and names in body["error"]["message"]):
        wrong = "%s (expected a refusal naming %r)" % (said, names)
    if not answers(client, headers, session_id):
        wrong = "%s; then the session does not answer" % (wrong or said)
    return wrong


def report(wrong):
    return "\n".join("%s -> %s" % (command[:100], found[:300]) for command, found in wrong.items())


def value_text(number):
    return "%d" % number if float(number).is_integer() else "%g" % number


def bound_cases(profile):
    """(command past its bound, name the refusal gives), (command at its bound, None) for every keyword bound."""
    cases = []
    for command, keywords in sorted(profile.bounds.items()):
        if command != "*" and not profile_allows(profile, command):
            continue
        for keyword, (low, high) in sorted(keywords.items()):
            template = TEMPLATES.get((command, keyword)) or TEMPLATES[command]
            typed = policy.user_keyword(keyword)
            if (low, high) == (0, 0):
                cases.append((template.format(kw=typed, v="true"), typed + " is not allowed"))
                continue
            past = high + max(1, abs(high))
            cases.append((template.format(kw=typed, v=value_text(past)), "%s must be between" % typed))
            if command not in NOT_RUN:
                cases.append((template.format(kw=typed, v=value_text(low)), None))
    return cases


def profile_allows(profile, command):
    return any(command == family or command.startswith(family + " ") for family in profile.commands)


def test_commands_measured_to_end_or_freeze_a_session_are_refused_naming_the_bound(viewer):
    client, alice, session_id = viewer
    wrong = {command: found for command, names in MEASURED
             if (found := outcome(client, alice, session_id, command, names))}
    assert not wrong, report(wrong)
    # and what they were refused for runs: the small renders that used to end the session
    for command in ("lighting shadows true multiShadow 64 msMapSize 1024", "save small.png width 64 height 48",
                    "label #1 residues text short", "save small.png width 64 height 48", "clip near -5 far 5",
                    "view", "save small.png width 64 height 48"):
        done = run(client, alice, session_id, command)
        assert done.status_code == 200 and done.get_json()["ok"], (command, done.get_json())


def test_every_keyword_bound_is_enforced_at_its_limit_and_the_session_keeps_answering(app, viewer):
    client, alice, session_id = viewer
    profile = app.extensions["chimerax_sessions"].profiles["viewer"]
    cases = bound_cases(profile)
    assert len(cases) > 150         # every bound of the table, past it and at it
    wrong = {}
    for command, names in cases:
        found = outcome(client, alice, session_id, command, names)
        if found:
            wrong[command] = found
    assert not wrong, report(wrong)


def test_rules_over_arguments_numbers_and_texts(viewer):
    client, alice, session_id = viewer
    wrong = {}
    for command, names in RULES:
        found = outcome(client, alice, session_id, command, names)
        if found:
            wrong[command] = found
    assert not wrong, report(wrong)


def test_a_command_that_runs_out_of_memory_is_a_command_error(viewer):
    client, alice, session_id = viewer
    # 2400^3 voxels of float32 (51 GB): over the session's memory limit (SESSION_MEMORY_MB)
    response = run(client, alice, session_id, "volume resample #2 spacing 0.01")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["ok"] is False and body["error"]["type"] == "MemoryError", body
    assert body["error"]["message"].startswith("out of memory: "), body
    assert "memory limit" in body["error"]["message"]
    assert answers(client, alice, session_id)
    again = run(client, alice, session_id, "volume resample #2 spacing 2")       # memory was given back
    assert again.status_code == 200 and again.get_json()["ok"], again.get_json()


def test_a_window_over_the_render_bound_is_refused(app_factory):
    app = app_factory(RENDER_MAX_PIXELS=1024 * 1024)
    client, alice = app.test_client(), token_header(app, "alice")
    created = client.post("/api/sessions", json={}, headers=alice)
    assert created.status_code == 201, created.get_json()
    session_id = created.get_json()["id"]
    assert outcome(client, alice, session_id, "windowsize 2048 1024", "RENDER_MAX_PIXELS") is None
    assert outcome(client, alice, session_id, "windowsize 1024 1024", None) is None
    assert outcome(client, alice, session_id, "save x.png width 1024 height 1024 supersample 2",
                   "RENDER_MAX_PIXELS") is None
    assert outcome(client, alice, session_id, "save x.png supersample 1", None) is None
