"""deploy/nginx.conf, run for real in front of a live gunicorn; the systemd unit's key settings."""
import configparser
import os
import shutil
import subprocess

import pytest
import requests

from app.services.processes.locate import PROJECT_ROOT

from .conftest import free_port, wait_until

pytestmark = pytest.mark.slow
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def nginx_in_front(gunicorn_server, tmp_path):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (make test installs Debian's nginx-light as root)")
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, TRUSTED_PROXIES="127.0.0.1", ADMIN_USERS="boss")
    port = free_port()
    site = open(os.path.join(PROJECT_ROOT, "deploy", "nginx.conf")).read()
    site = site.replace("127.0.0.1:8000", "127.0.0.1:%d" % server.port).replace("listen 80;", "listen 127.0.0.1:%d;" % port)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        "daemon off; pid %s/nginx.pid; error_log %s/error.log;\nevents {}\n"
        "http { access_log %s/access.log; client_body_temp_path %s; proxy_temp_path %s;\n"
        "include %s/site.conf; }\n" % ((tmp_path,) * 3 + (tmp_path / "body", tmp_path / "proxy", tmp_path)))
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port

    def up():
        try:
            return requests.get(url + "/api/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    try:
        wait_until(up, 10, message="nginx")
        yield server, url
    finally:
        proc.terminate()
        proc.wait(10)


def test_nginx_proxies_the_api(nginx_in_front):
    server, url = nginx_in_front
    alice = server.token("alice")
    created = requests.post(url + "/api/sessions", json={}, headers=alice, timeout=60)
    assert created.status_code == 201
    # nginx's own request id reaches the service and comes back
    assert len(created.headers["X-Request-ID"]) == 32
    reply = requests.post(url + "/api/sessions/%s/commands" % created.json()["id"], json={"command": "pwd"},
                          headers=alice, timeout=30)
    assert reply.json()["ok"]
    assert requests.delete(url + "/api/sessions/" + created.json()["id"], headers=alice, timeout=30).status_code == 204
    # a client cannot pose as a user through the proxy: nginx clears X-Remote-User
    assert requests.get(url + "/api/sessions", headers={"X-Remote-User": "boss"}, timeout=10).status_code == 401
    # ... while the service itself trusts it from the proxy's address (what auth_request would set)
    assert requests.get(server.url + "/api/sessions", headers={"X-Remote-User": "boss"}, timeout=10).status_code == 200


def test_systemd_unit_leaves_sessions_to_the_service():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(os.path.join(PROJECT_ROOT, "deploy", "chimerax-sessions.service"))
    service = unit["Service"]
    assert service["KillMode"] == "process" and service["KillSignal"] == "SIGTERM"
    assert "gunicorn -c gunicorn.conf.py wsgi:app" in service["ExecStart"]
