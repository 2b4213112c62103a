"""The web console in a real browser (Debian's headless chromium through
selenium) against a real gunicorn running the real ChimeraX runtime.

The console and the admin page run at the defaults `make run` serves: the
warm pool (POOL_SIZE=2) filling from the server's start, IDLE_ACTION=suspend,
gthread workers, the bwrap sandbox and the sweeper on. Two workers rather
than four: requests still cross workers, and the machine has two cores."""
import filecmp
import re
import shutil
import tempfile
import threading
import time

import psutil
import pytest
import requests
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from . import browser as chromium
from .conftest import alanin_pdb, wait_until
from .test_sandbox import new_session, place, workspace

pytestmark = pytest.mark.slow
WAIT = 60


@pytest.fixture
def browser(tmp_path):
    drivers, scratches = [], []

    def start():
        downloads = tmp_path / ("downloads-%d" % len(drivers))
        downloads.mkdir()
        # Short: chromium's singleton socket lives there, within a socket path's 108 bytes.
        scratch = tempfile.mkdtemp(prefix="chr")
        scratches.append(scratch)
        driver = chromium.start(downloads, scratch)
        driver.downloads = downloads
        drivers.append(driver)
        return driver
    yield start
    for driver in drivers:
        driver.quit()
    for scratch in scratches:
        shutil.rmtree(scratch, ignore_errors=True)


def by_testid(driver, name, within=None):
    return (within or driver).find_element(By.CSS_SELECTOR, '[data-testid="%s"]' % name)


def all_by_testid(driver, name, within=None):
    return (within or driver).find_elements(By.CSS_SELECTOR, '[data-testid="%s"]' % name)


def until(driver, condition, message):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(lambda d: condition(), message)
    except TimeoutException:    # say what the page showed instead
        raise TimeoutException("%s; the page showed: %s" % (message, page_state(driver))) from None


def page_state(driver):
    shown = {}
    for name in ("error", "busy", "session-status", "session-ended"):
        found = all_by_testid(driver, name)
        if found and found[0].is_displayed():
            shown[name] = found[0].text
    try:
        logs = [entry["message"] for entry in driver.get_log("browser")][-5:]
    except Exception as err:     # a driver without the browser's log
        logs = [repr(err)]
    return "%s at %s; console: %s" % (shown, driver.current_url, logs)


def sign_in(driver, url, token):
    driver.get(url)
    by_testid(driver, "token-input").send_keys(token.removeprefix("Bearer "))
    by_testid(driver, "sign-in").click()
    until(driver, lambda: by_testid(driver, "who").text, "signed in")


def error_text(driver):
    box = by_testid(driver, "error")
    return box.text if box.is_displayed() else ""


def snapshot_version(driver):
    return int(by_testid(driver, "snapshot").get_attribute("data-version") or 0)


def session_status(driver):
    return by_testid(driver, "session-status").text


def run(driver, command):
    before = snapshot_version(driver)
    field = by_testid(driver, "command-input")
    field.send_keys(command)
    field.send_keys(Keys.ENTER)
    until(driver, lambda: snapshot_version(driver) > before, "the image refreshed after " + command)
    return by_testid(driver, "command-output").find_elements(By.CSS_SELECTOR, ".entry")[-1]


def warm_process_ready(server):
    """Wait for a ready process in the pool; then the time (a claim takes a process started before it)."""
    wait_until(lambda: any(e.status == "ready" for e in server.pool()), 60, message="a ready pool process")
    return time.time()


def started_before(server, boss, session_id, moment):
    """Whether the session's ChimeraX was started before `moment`: a warm process, not a cold start."""
    pid = requests.get(server.url + "/api/sessions/" + session_id, headers={"Authorization": boss},
                       timeout=10).json()["pid"]
    return psutil.Process(pid).create_time() < moment


def test_a_user_runs_a_session_from_the_browser(gunicorn_server, browser):
    server = gunicorn_server(workers=2)             # the defaults (module docstring)
    alice = server.token("alice")["Authorization"]
    boss = server.token("boss", "admin")["Authorization"]
    driver = browser()
    sign_in(driver, server.url + "/", alice)
    assert by_testid(driver, "who").text == "alice"
    chromium.screenshot(driver, "sessions-empty")

    by_testid(driver, "create-label").send_keys("alanine")
    by_testid(driver, "create-file").send_keys(alanin_pdb())
    clicked = warm_process_ready(server)
    by_testid(driver, "create-session").click()
    until(driver, lambda: "/sessions/" in driver.current_url, "the console opened")
    until(driver, lambda: session_status(driver) == "active" and snapshot_version(driver) >= 1, "first image")
    session_id = driver.current_url.rsplit("/", 1)[-1]
    assert started_before(server, boss, session_id, clicked), "the session did not take the pool's warm process"
    until(driver, lambda: "alanin.pdb" in by_testid(driver, "files").text, "the uploaded file listed")
    run(driver, "show atoms; style sphere")
    before = by_testid(driver, "snapshot").screenshot_as_png

    entry = run(driver, "style stick")
    assert "failed" not in entry.get_attribute("class"), entry.text
    after = by_testid(driver, "snapshot").screenshot_as_png
    assert after != before, "the image did not change after style stick"
    assert error_text(driver) == ""
    chromium.screenshot(driver, "console")
    chromium.keep_readme_image("console")

    by_testid(driver, "scene-toggle").click()        # three.js, on chromium's software WebGL
    until(driver, lambda: int(by_testid(driver, "scene").get_attribute("data-meshes") or 0) > 0, "the 3D scene")
    assert error_text(driver) == ""
    chromium.screenshot(driver, "console-3d")
    driver.find_element(By.ID, "show-image").click()

    # a denied command shows the API's error with its request id
    entry = run(driver, "runscript evil.py")
    assert "failed" in entry.get_attribute("class") and "denied" in entry.text

    item = driver.find_element(By.CSS_SELECTOR, '[data-testid="files"] li[data-name="alanin.pdb"]')
    by_testid(driver, "download-file", item).click()
    downloaded = driver.downloads / "alanin.pdb"
    until(driver, downloaded.exists, "the file downloaded")
    until(driver, lambda: filecmp.cmp(downloaded, alanin_pdb(), shallow=False), "the whole file downloaded")

    by_testid(driver, "suspend-session").click()
    until(driver, lambda: session_status(driver) == "suspended", "suspended")
    assert "suspended" in by_testid(driver, "session-ended").text
    clicked = warm_process_ready(server)            # refilled since the create took one
    image = snapshot_version(driver)
    by_testid(driver, "resume-session").click()
    until(driver, lambda: session_status(driver) == "active" and snapshot_version(driver) > image, "resumed")
    until(driver, lambda: not by_testid(driver, "session-ended").is_displayed(), "banner gone")
    assert started_before(server, boss, session_id, clicked), "the resume did not take the pool's warm process"
    entry = run(driver, "info models")              # the scene came back in the warm process
    assert "failed" not in entry.get_attribute("class") and "alanin.pdb" in entry.text, entry.text

    driver.get(server.url + "/")       # the token survives navigation within the tab
    until(driver, lambda: all_by_testid(driver, "session-link"), "the session listed")
    assert [link.text for link in all_by_testid(driver, "session-link")] == ["alanine"]
    all_by_testid(driver, "session-link")[0].click()
    until(driver, lambda: session_status(driver) == "active", "console again")
    by_testid(driver, "delete-session").click()
    until(driver, lambda: by_testid(driver, "session-ended").is_displayed(), "the end banner")
    assert "deleted" in by_testid(driver, "session-ended").text
    assert by_testid(driver, "command-input").get_attribute("disabled") is not None
    record = requests.get(server.url + "/api/sessions/" + session_id, headers={"Authorization": alice}, timeout=10)
    assert record.status_code == 404 and record.json()["error"]["code"] == "session_deleted"


class OverviewSampler(threading.Thread):
    """GET /api/admin/overview every 50 ms, keeping each answer: (status code, body)."""

    def __init__(self, server, boss):
        super().__init__(daemon=True)
        self.server, self.boss, self.answers, self.stopping = server, boss, [], threading.Event()

    def run(self):
        while not self.stopping.wait(0.05):
            try:
                reply = requests.get(self.server.url + "/api/admin/overview",
                                     headers={"Authorization": self.boss}, timeout=10)
                self.answers.append((reply.status_code, reply.json() if reply.status_code == 200 else reply.text))
            except (requests.RequestException, ValueError) as err:
                self.answers.append((None, repr(err)))

    def pool(self):
        """The last answer's pool counts, if it was a 200."""
        return self.answers[-1][1]["pool"] if self.answers and self.answers[-1][0] == 200 else None

    def stop(self):
        self.stopping.set()
        self.join(15)
        return self.answers


def logged(server, text):
    """How many requests the server's request log shows containing `text` ("<user> <METHOD> <path> ")."""
    return sum(1 for line in open(server.log_path) if "cxs.requests" in line and text in line)


POOL_TEXT = re.compile(r"\d+ (starting|ready)(, \d+ (starting|ready))? \(target size 2\)")


def test_an_admin_ends_another_users_session_and_a_user_cannot_open_admin(gunicorn_server, browser):
    server = gunicorn_server(workers=2)             # the defaults (module docstring)
    alice, boss = server.token("alice")["Authorization"], server.token("boss", "admin")["Authorization"]
    # The overview API all along: while the pool fills, and refills after alice's create takes a process.
    sampler = OverviewSampler(server, boss)
    sampler.start()
    try:
        wait_until(lambda: server.pool(), 30, message="the pool to have entries")
        created = requests.post(server.url + "/api/sessions", json={"label": "alice's"},
                                headers={"Authorization": alice}, timeout=60)
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        denied = requests.post(server.url + "/api/sessions/%s/commands" % session_id,
                               json={"command": "runscript x.py"}, headers={"Authorization": alice}, timeout=60)
        assert denied.status_code == 403, denied.text

        driver = browser()
        sign_in(driver, server.url + "/admin", alice)
        until(driver, lambda: error_text(driver), "the refusal shown")
        # The API's refusal as it gives it: its code (a scope a user's token lacks, issue 35) and request id.
        assert "insufficient_scope" in error_text(driver) and "admin:read" in error_text(driver)
        assert "request" in error_text(driver)
        assert all_by_testid(driver, "admin-session-row") == []
        chromium.screenshot(driver, "admin-refused")

        admin = browser()
        # The page loads while the pool has entries (with any, the overview was a
        # 500 and the page showed nothing at all).
        wait_until(lambda: server.pool(), 30, message="the pool to have entries")
        sign_in(admin, server.url + "/admin", boss)
        until(admin, lambda: all_by_testid(admin, "admin-session-row"), "rows")
        # Every user's tokens are read at load (and after a revoke), not with each 5-s refresh of the rest.
        wait_until(lambda: logged(server, "boss GET /api/admin/webhooks") >= 2, 20, message="the page's refresh")
        assert logged(server, "boss GET /api/tokens ") == 1
        row = admin.find_element(By.CSS_SELECTOR,
                                 '[data-testid="admin-session-row"][data-session-id="%s"]' % session_id)
        assert "alice" in row.text and "active" in row.text and "MiB" in row.text
        until(admin, lambda: POOL_TEXT.fullmatch(by_testid(admin, "pool").text), "the pool's processes by status")
        assert error_text(admin) == ""
        assert "runscript x.py" in by_testid(admin, "denied").text and "alice" in by_testid(admin, "denied").text
        chromium.screenshot(admin, "admin")
        chromium.keep_readme_image("admin")
        by_testid(admin, "admin-end-session", row).click()
        until(admin, lambda: not admin.find_elements(
            By.CSS_SELECTOR, '[data-testid="admin-session-row"][data-session-id="%s"]' % session_id), "row gone")
        record = requests.get(server.url + "/api/sessions/" + session_id, headers={"Authorization": alice},
                              timeout=10)
        assert record.status_code == 404 and record.json()["error"]["code"] == "session_deleted"

        # The pool full again, and the overview says so.
        wait_until(lambda: sampler.pool() == {"ready": 2}, 60, message="the overview to count 2 ready processes")
    finally:
        answers = sampler.stop()
    assert answers and {code for code, _ in answers} == {200}, [a for a in answers if a[0] != 200][:3]
    assert all(body["pool_size"] == 2 and set(body["pool"]) <= {"starting", "ready"}
               and sum(body["pool"].values()) <= 2 for _, body in answers), answers
    seen = {status for _, body in answers for status in body["pool"]}
    assert seen == {"starting", "ready"}, "while the pool filled, the overview counted only %s" % seen
    assert [e.status.value for e in server.pool()] == ["ready", "ready"]          # as the store has it


def test_a_hostile_reply_from_chimerax_is_shown_as_text(gunicorn_server, browser):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    alice = server.token("alice")["Authorization"]
    payload = "<img src=x onerror=alert(1)>"
    driver = browser()
    sign_in(driver, server.url + "/", alice)
    by_testid(driver, "create-file").send_keys(alanin_pdb())
    by_testid(driver, "create-session").click()
    until(driver, lambda: "/sessions/" in driver.current_url and session_status(driver) == "active", "console")
    until(driver, lambda: snapshot_version(driver) >= 1, "first image")
    run(driver, "rename #1 '%s'" % payload)
    entry = run(driver, "info models")
    assert '<img src="x" onerror="alert(1)">' in entry.text     # the name, as text
    output = by_testid(driver, "command-output")
    assert output.find_elements(By.CSS_SELECTOR, "img, script, [onerror]") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    assert driver.execute_script("return document.title") == "Session %s - ChimeraX sessions" % (
        driver.current_url.rsplit("/", 1)[-1][:8])


# Trusted Python (an admin's) that ticks until stopped, its lines with markup in them.
HOSTILE_TICKS = ("import time\nfor i in range(2400):\n"
                 "    session.logger.info('tick %d <img src=x onerror=alert(1)>' % i)\n"
                 "    t = time.time()\n    while time.time() < t + 0.25:\n        pass\n")


def test_the_console_follows_a_background_command_live_and_stops_it(gunicorn_server, browser):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    boss = server.token("boss", "admin")["Authorization"]
    session_id = new_session(server, {"Authorization": boss})
    place(workspace(server, session_id), "ticks.py", HOSTILE_TICKS)
    driver = browser()
    sign_in(driver, server.url + "/sessions/" + session_id, boss)
    until(driver, lambda: session_status(driver) == "active" and snapshot_version(driver) >= 1, "the console")
    until(driver, lambda: by_testid(driver, "log-stream").text == "live", "the live log")
    stop = by_testid(driver, "stop-command")
    assert not stop.is_enabled()

    by_testid(driver, "run-in-background").click()
    field = by_testid(driver, "command-input")
    field.send_keys("runscript ticks.py")
    field.send_keys(Keys.ENTER)
    output = by_testid(driver, "command-output")
    entry = until(driver, lambda: [e for e in output.find_elements(By.CSS_SELECTOR, ".entry")
                                   if "tick 2 " in e.text], "a log line of the running command")[0]
    command_id = entry.get_attribute("data-command-id")
    state = requests.get(server.url + "/api/sessions/%s/commands/%s" % (session_id, command_id),
                         headers={"Authorization": boss}, timeout=10).json()
    assert state["status"] == "running", state             # shown while it ran, not after
    assert entry.get_attribute("data-status") == "running" and stop.is_enabled()
    assert field.get_attribute("disabled") is None          # the page is not held up by it
    assert "tick 1 <img src=x onerror=alert(1)>" in entry.text      # log text stays text
    assert output.find_elements(By.CSS_SELECTOR, "img, script, [onerror]") == []
    chromium.screenshot(driver, "console-live")

    stop.click()
    until(driver, lambda: entry.get_attribute("data-status") == "interrupted", "the command shown interrupted")
    state = requests.get(server.url + "/api/sessions/%s/commands/%s" % (session_id, command_id),
                         headers={"Authorization": boss}, timeout=10).json()
    assert state["status"] == "interrupted" and state["error"]["type"] == "Interrupted"
    until(driver, lambda: not stop.is_enabled(), "Stop disabled once nothing runs")
    until(driver, lambda: entry.find_elements(By.CSS_SELECTOR, ".log.error"), "the command's reply shown")
    assert "the command was interrupted" in entry.text and error_text(driver) == ""
    assert output.find_elements(By.CSS_SELECTOR, "img, script, [onerror]") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    chromium.screenshot(driver, "console-stopped")

    # The session kept going: a command in the foreground, its reply in an entry of its own.
    by_testid(driver, "run-in-background").click()
    after = run(driver, "version")
    until(driver, lambda: after.get_attribute("data-status") == "done", "its reply")
    assert "UCSF ChimeraX" in after.text
    # Stop works on a command in the foreground too: its reply says interrupted.
    field.send_keys("runscript ticks.py")
    field.send_keys(Keys.ENTER)
    waited = until(driver, lambda: [e for e in output.find_elements(By.CSS_SELECTOR, ".entry")[2:]
                                    if "tick 1 " in e.text], "the foreground command's lines")[0]
    assert by_testid(driver, "busy").is_displayed()
    until(driver, stop.is_enabled, "Stop enabled")
    stop.click()
    until(driver, lambda: waited.get_attribute("data-status") == "interrupted", "the foreground command stopped")
    until(driver, lambda: not by_testid(driver, "busy").is_displayed(), "the page no longer busy")
    # The service's own commands (each image's save) are not shown: three entries.
    assert [e.get_attribute("data-command-id") for e in output.find_elements(By.CSS_SELECTOR, ".entry")] == [
        command_id, after.get_attribute("data-command-id"), waited.get_attribute("data-command-id")]
    assert session_status(driver) == "active" and error_text(driver) == ""


def test_the_api_docs_page_renders_every_operation(gunicorn_server, browser):
    server = gunicorn_server(workers=1, SWEEP_INTERVAL=60)
    spec = requests.get(server.url + "/api/openapi.json", timeout=10).json()
    operations = sum(1 for item in spec["paths"].values() for method in item if method != "parameters")
    driver = browser()
    driver.get(server.url + "/api/docs/")
    until(driver, lambda: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) == operations,
          "Swagger UI lists the %d operations" % operations)
    chromium.screenshot(driver, "api-docs")
