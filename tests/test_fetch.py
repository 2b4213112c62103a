"""`open 1abc` inside the sandbox: ChimeraX's own fetchers, through the agent, to
the service's broker, against a loopback mirror laid out like the real sources
(tests/fetch_mirror.py), at the defaults (sandbox on, warm pool)."""
import hashlib
import os
import threading

import pytest

from app.services.processes.launchers.sandbox import FETCH_CACHE

from .conftest import token_header
from .fetch_mirror import Mirror, layout
from .helpers import FETCHES, new_session, row

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mirror_files(tmp_path_factory):
    return layout(str(tmp_path_factory.mktemp("mirror")))


@pytest.fixture
def mirror(mirror_files):
    server = Mirror(dict(mirror_files))
    yield server
    server.close()


@pytest.fixture
def fetching(app_factory, mirror, tmp_path):
    def build(**overrides):
        settings = dict(FETCH_MIRRORS=mirror.mirrors(), FETCH_CACHE_DIR=str(tmp_path / "fetch-cache"))
        settings.update(overrides)
        return app_factory(**settings)
    return build


def command(client, headers, url, text):
    reply = client.post(url + "/commands", json={"command": text}, headers=headers)
    assert reply.status_code == 200, (text, reply.status_code, reply.get_json())
    return reply.get_json()


def models(client, headers, url):
    return command(client, headers, url, "info models")["log"]


def test_a_viewer_opens_database_entries_with_chimeraxs_own_fetchers(fetching, mirror):
    app = fetching()
    client, alice = app.test_client(), token_header(app, "alice")
    url = new_session(client, alice)
    for text, path in (("open 1abc", "files.rcsb.org/download/1abc.cif"),
                       ("open pdb:2abc format pdb", "files.rcsb.org/download/2abc.pdb"),
                       ("open alphafold:P69905", "alphafold.ebi.ac.uk/files/AF-P69905-F1-model_v4.cif"),
                       ("open emdb:1080", "ftp.ebi.ac.uk/pub/databases/emdb/structures/EMD-1080/map/emd_1080.map.gz")):
        result = command(client, alice, url, text)
        assert result["ok"], (text, result)
        assert mirror.requests[path] == 1, (text, dict(mirror.requests))
    # What ChimeraX fetches by itself comes the same way: AlphaFold DB's version file, ligand templates.
    assert mirror.requests["www.rbvi.ucsf.edu/chimerax/data/status/alphafold_database3.json"] == 1
    assert any(path.startswith("files.wwpdb.org/pub/pdb/refdata/chem_comp/") for path in mirror.requests)
    shown = " ".join(sum(models(client, alice, url).values(), []))
    assert shown.count("#") >= 4, shown


def test_another_users_session_is_served_from_the_cache(fetching, mirror):
    app = fetching()
    client = app.test_client()
    alice, bob = token_header(app, "alice"), token_header(app, "bob")
    assert command(client, alice, new_session(client, alice), "open 1abc")["ok"]
    assert command(client, bob, new_session(client, bob), "open 1abc")["ok"]
    assert mirror.requests["files.rcsb.org/download/1abc.cif"] == 1
    root = token_header(app, "root", "admin")
    assert client.get("/api/admin/fetch-cache", headers=alice).status_code == 403
    listing = client.get("/api/admin/fetch-cache", headers=root).get_json()
    entry = next(e for e in listing["entries"] if e["url"] == "http://files.rcsb.org/download/1abc.cif")
    assert entry["in_use"] and entry["save_name"] == "1abc.cif" and listing["bytes"] >= entry["size"] > 0
    purged = client.delete("/api/admin/fetch-cache", headers=root).get_json()
    assert entry["url"] in purged["kept_in_use"] and entry["url"] not in purged["removed"]
    assert client.get("/api/admin/overview", headers=root).get_json()["fetch_cache"]["entries"] >= 1


def test_four_sessions_fetching_one_new_entry_at_once_make_one_request(fetching, mirror):
    app = fetching()
    users = [token_header(app, "user%d" % i) for i in range(4)]
    urls = [new_session(app.test_client(), headers) for headers in users]
    mirror.behaviour["files.rcsb.org/download/3abc.cif"] = "slow"
    results, start = [None] * 4, threading.Barrier(4)

    def fetch(i):
        start.wait()
        results[i] = app.test_client().post(urls[i] + "/commands", json={"command": "open 3abc"},
                                            headers=users[i]).get_json()
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result["ok"] for result in results), results
    assert mirror.requests["files.rcsb.org/download/3abc.cif"] == 1


@pytest.mark.parametrize("setup, text, said", [
    ({"files.rcsb.org/download/4abc.cif": "hang"}, "open 4abc", "did not answer within"),
    ({"files.rcsb.org/download/5abc.cif": "endless"}, "open 5abc", "larger than FETCH_MAX_MB"),
    ({"files.rcsb.org/download/6abc.cif": ("redirect", "http://bad.example/1abc.cif")}, "open 6abc",
     "not allowed"),
    ({}, "open 9zzz", "not found at the source"),
])
def test_a_source_failure_is_a_chimerax_error_and_the_session_keeps_working(fetching, mirror, setup, text, said):
    app = fetching(FETCH_TIMEOUT=2.0, FETCH_MAX_MB=1)
    mirror.behaviour.update(setup)
    client, alice = app.test_client(), token_header(app, "alice")
    url = new_session(client, alice)
    result = command(client, alice, url, text)
    assert not result["ok"] and said in result["error"]["message"], result
    assert command(client, alice, url, "open 1abc")["ok"]


def test_unreachable_sources_rate_limits_and_the_switch_are_said(fetching):
    # Every source at a loopback port nothing listens on: unreachable whatever the machine's network.
    from .conftest import free_port
    from .fetch_mirror import SOURCES
    nowhere = "http://127.0.0.1:%d/" % free_port()
    app = fetching(FETCH_MIRRORS=",".join("%s=%s" % (source, nowhere) for source in SOURCES), FETCH_TIMEOUT=5.0)
    client, alice = app.test_client(), token_header(app, "alice")
    url = new_session(client, alice)
    result = command(client, alice, url, "open 7abc")
    assert not result["ok"] and "unreachable" in result["error"]["message"], result

    limited = fetching(FETCH_PER_USER_PER_MIN=4)     # an `open` here is two fetches: the entry, a template
    client, bob = limited.test_client(), token_header(limited, "bob")
    url = new_session(client, bob)
    for text in ("open 1abc", "open 2abc"):
        result = command(client, bob, url, text)
        assert result["ok"], result
    result = command(client, bob, url, "open 3abc")
    assert not result["ok"] and "FETCH_PER_USER_PER_MIN" in result["error"]["message"], result

    off = fetching(ALLOW_FETCH=False)
    client, carol = off.test_client(), token_header(off, "carol")
    url = new_session(client, carol)
    for text in FETCHES:
        reply = client.post(url + "/commands", json={"command": text}, headers=carol)
        assert reply.status_code == 403 and reply.get_json()["error"]["code"] == "command_denied", text


@pytest.mark.parametrize("text", ["open http://files.rcsb.org/download/1abc.cif", "open pdb:1ab/c",
                                  "open pdb:../../etc/passwd", "open 1abc from nowhere.example"])
def test_urls_and_malformed_ids_are_refused_for_viewers(fetching, mirror, text):
    app = fetching()
    client, alice = app.test_client(), token_header(app, "alice")
    reply = client.post(new_session(client, alice) + "/commands", json={"command": text}, headers=alice)
    assert reply.status_code in (200, 400, 403), reply.get_json()
    assert reply.status_code != 200 or not reply.get_json()["ok"]
    assert sum(mirror.requests.values()) == 0


def test_trusted_python_cannot_change_what_the_cache_serves(fetching, mirror):
    app = fetching()
    client, root = app.test_client(), token_header(app, "root", "admin")
    url = new_session(client, root)
    assert command(client, root, url, "open 1abc")["ok"]
    cache = app.config["FETCH_CACHE_DIR"]
    cached = [os.path.join(folder, name) for folder, _, names in os.walk(cache) for name in names]
    assert len(cached) == 1
    before = hashlib.sha256(open(cached[0], "rb").read()).hexdigest()
    workspace = row(app, url.rsplit("/", 1)[-1]).workspace
    with open(os.path.join(workspace, "tamper.py"), "w") as out:
        out.write("import glob, os\n"
                  "found = glob.glob('%s/**/*.cif', recursive=True)\n"
                  "outcomes = []\n"
                  "for path in found:\n"
                  "    for attempt in (lambda: open(path, 'w').write('data_hacked'), lambda: os.chmod(path, 0o666),\n"
                  "                    lambda: os.unlink(path)):\n"
                  "        try:\n"
                  "            attempt(); outcomes.append('done')\n"
                  "        except OSError as err:\n"
                  "            outcomes.append(type(err).__name__)\n"
                  "open('outcomes.txt', 'w').write('%%d %%s' %% (len(found), ' '.join(outcomes)))\n" % FETCH_CACHE)
    os.chmod(os.path.join(workspace, "tamper.py"), 0o644)
    assert command(client, root, url, "runscript tamper.py")["ok"]
    found, *outcomes = open(os.path.join(workspace, "outcomes.txt")).read().split()
    assert found == "1" and "done" not in outcomes, outcomes
    assert hashlib.sha256(open(cached[0], "rb").read()).hexdigest() == before


def test_a_trusted_user_opens_allowed_urls_through_the_broker_only_with_the_switch(fetching, mirror):
    text = "open http://files.rcsb.org/download/1abc.cif"
    app = fetching()
    client, root = app.test_client(), token_header(app, "root", "admin")
    result = command(client, root, new_session(client, root), text)
    assert not result["ok"] and "FETCH_ALLOW_URLS" in result["error"]["message"], result
    assert sum(mirror.requests.values()) == 0

    allowing = fetching(FETCH_ALLOW_URLS=True)
    client, root = allowing.test_client(), token_header(allowing, "root", "admin")
    url = new_session(client, root)
    opened = command(client, root, url, text)
    assert opened["ok"], opened
    assert mirror.requests["files.rcsb.org/download/1abc.cif"] == 1
    outside = command(client, root, url, "open http://bad.example/1abc.cif")
    assert not outside["ok"] and "not allowed" in outside["error"]["message"], outside
    alice = token_header(allowing, "alice")
    refused = client.post(new_session(client, alice) + "/commands", json={"command": text}, headers=alice)
    assert refused.status_code == 403      # a viewer's URL never reaches the broker


def test_sessions_of_several_gunicorn_workers_fetching_one_entry_at_once_make_one_request(gunicorn_server,
                                                                                           mirror, tmp_path):
    import requests
    server = gunicorn_server(workers=3, FETCH_MIRRORS=mirror.mirrors(), FETCH_CACHE_DIR=str(tmp_path / "cache"),
                             MAX_SESSIONS_PER_USER=8)
    headers = server.token("alice")
    sids = [requests.post(server.url + "/api/sessions", json={}, headers=headers, timeout=60).json()["id"]
            for _ in range(6)]
    mirror.behaviour["files.rcsb.org/download/7abc.cif"] = "slow"
    results, start = {}, threading.Barrier(len(sids))

    def fetch(sid):
        start.wait()
        results[sid] = requests.post(server.url + "/api/sessions/%s/commands" % sid,
                                     json={"command": "open 7abc"}, headers=headers, timeout=60).json()
    threads = [threading.Thread(target=fetch, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result["ok"] for result in results.values()), results
    assert mirror.requests["files.rcsb.org/download/7abc.cif"] == 1
    workers = {line.split("[")[1].split("]")[0] for line in open(server.log_path)
               if "cxs.requests" in line and "/commands 200" in line}
    assert len(workers) > 1, "all the commands went to one worker: the lease was not tested across them"
