"""Sharing and tokens in the web console (issues 35 and 36), in a real
browser (Debian's headless chromium through selenium) against a real
gunicorn running the real ChimeraX runtime: the Share dialog, "Shared with
me", a grantee's console by access, a share link's read-only live view, and
the admin page's tokens."""
import pytest
import requests
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from . import browser as chromium
from .conftest import alanin_pdb, wait_until
from .test_sandbox import command, new_session, place, workspace
from .test_web import all_by_testid, browser, by_testid, error_text, session_status, sign_in, snapshot_version, until

__all__ = ["browser"]           # the fixture, used by name
pytestmark = pytest.mark.slow
HOSTILE = "<img src=x onerror=alert(1)>"


def owner_runs(server, headers, session_id, text):
    """The owner's command through the API, as a script sends it: again after a
    409 session_busy (one command at a time; the pages render their images)."""
    def sent():
        reply = command(server, headers, session_id, text)
        if reply.status_code == 409 and reply.json()["error"]["code"] == "session_busy":
            return None
        assert reply.status_code == 200 and reply.json()["ok"], reply.text
        return reply.json()
    return wait_until(sent, 30, interval=0.2, message="%r run" % text)


# The sessions page and the admin page rebuild their tables every 5 s: a row
# found may be replaced before it is read or clicked. Each is read (or clicked)
# whole, again if it was replaced meanwhile.
def rows(driver, selector):
    """[{attribute: value, "cells": [text, ...]}] of the rows `selector` finds, read at once."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((row) => Object.assign("
        "Object.fromEntries([...row.attributes].map((a) => [a.name, a.value])),"
        "{cells: [...row.querySelectorAll('td')].map((td) => td.innerText)}));", selector)


def click_in(driver, selector, testid):
    """Click the `testid` element inside the row `selector` finds, found again if the row was replaced."""
    def clicked():
        try:
            by_testid(driver, testid, driver.find_element(By.CSS_SELECTOR, selector)).click()
            return True
        except StaleElementReferenceException:
            return False
    until(driver, clicked, "%s clicked in %s" % (testid, selector))


def entries(driver):
    return by_testid(driver, "command-output").find_elements(By.CSS_SELECTOR, ".entry")


def entry_of(driver, text):
    """The console's entries whose command is `text` (the echo reads "> text")."""
    return [e for e in entries(driver) if e.find_element(By.CSS_SELECTOR, ".echo").text.startswith("> " + text)]


def absent(driver, *names):
    """Which of the testids are in the page (a caller's access takes them out)."""
    return [name for name in names if all_by_testid(driver, name)]


def no_markup_ran(driver):
    assert driver.find_elements(By.CSS_SELECTOR, "main img:not([data-testid=snapshot]), main script, [onerror]") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.accept()


def opened_console(driver):
    until(driver, lambda: session_status(driver) == "active" and snapshot_version(driver) >= 1, "the console")
    until(driver, lambda: by_testid(driver, "log-stream").text == "live", "the live log")


def share_in_dialog(driver, user, access):
    if not by_testid(driver, "share-dialog").is_displayed():
        by_testid(driver, "share-open").click()
        until(driver, lambda: by_testid(driver, "share-dialog").is_displayed(), "the Share dialog")
    by_testid(driver, "share-user").send_keys(user)
    Select(by_testid(driver, "share-access")).select_by_value(access)
    by_testid(driver, "share-submit").click()
    return until(driver, lambda: driver.find_elements(
        By.CSS_SELECTOR, '[data-testid="share-row"][data-user="%s"][data-access="%s"]' % (user, access)),
        "the share listed")[0]


def test_a_session_shared_in_the_dialog_is_followed_live_by_its_grantee(gunicorn_server, browser):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    olga, gina = server.token("olga")["Authorization"], server.token("gina")["Authorization"]
    created = requests.post(server.url + "/api/sessions", json={"label": "olga's " + HOSTILE},
                            headers={"Authorization": olga}, timeout=120)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    place(workspace(server, sid), "alanin.pdb", open(alanin_pdb()).read())

    owner = browser()
    sign_in(owner, server.url + "/sessions/" + sid, olga)
    opened_console(owner)
    row = share_in_dialog(owner, "gina", "view")
    assert "gina" in row.text and "never" in row.text and error_text(owner) == ""
    chromium.screenshot(owner, "share-dialog")
    by_testid(owner, "share-close").click()

    grantee = browser()
    sign_in(grantee, server.url + "/", gina)
    shared = until(grantee, lambda: rows(grantee, '[data-testid="shared-session-row"]'), "Shared with me")
    assert [(r["data-session-id"], r["data-owner"], r["data-access"]) for r in shared] == [(sid, "olga", "view")]
    assert shared[0]["cells"][:3] == ["olga's " + HOSTILE, "olga", "view"]
    assert all_by_testid(grantee, "session-link") == []
    no_markup_ran(grantee)
    chromium.screenshot(grantee, "shared-with-me")
    click_in(grantee, '[data-testid="shared-session-row"]', "shared-session-link")
    opened_console(grantee)
    assert by_testid(grantee, "session-access").text == "shared by olga: view only"
    assert absent(grantee, "command-input", "stop-command", "run-in-background", "upload-input", "share-open",
                  "delete-session", "suspend-session", "delete-file") == []
    until(grantee, lambda: "alanin.pdb" in by_testid(grantee, "files").text, "the files, readable to a viewer")

    # The owner works through the API: the grantee's log and image follow.
    image = snapshot_version(grantee)
    owner_runs(server, {"Authorization": olga}, sid, "open alanin.pdb")
    opened = until(grantee, lambda: entry_of(grantee, "open alanin.pdb"), "the owner's command, live")[0]
    until(grantee, lambda: opened.get_attribute("data-status") == "ended", "its end, live")
    until(grantee, lambda: snapshot_version(grantee) > image, "the image after the owner's command")
    owner_runs(server, {"Authorization": olga}, sid, "version")
    until(grantee, lambda: [e for e in entry_of(grantee, "version") if "UCSF ChimeraX" in e.text], "the version line")
    assert error_text(grantee) == "" and session_status(grantee) == "active"
    chromium.screenshot(grantee, "shared-view")

    # Control, given in the dialog: the console and Stop, still no sharing, suspending or ending.
    share_in_dialog(owner, "gina", "control")
    assert len(all_by_testid(owner, "share-row")) == 1         # it replaced the view share
    grantee.refresh()
    opened_console(grantee)
    assert by_testid(grantee, "session-access").text == "shared by olga: control"
    assert absent(grantee, "command-input", "stop-command", "upload-input") == [
        "command-input", "stop-command", "upload-input"]
    assert absent(grantee, "share-open", "delete-session", "suspend-session", "resume-session", "delete-file") == []
    field = by_testid(grantee, "command-input")
    field.send_keys("style stick\n")
    mine = until(grantee, lambda: entry_of(grantee, "style stick"), "the grantee's command")[0]
    until(grantee, lambda: mine.get_attribute("data-status") == "done", "its reply")
    history = requests.get(server.url + "/api/sessions/%s/commands" % sid, headers={"Authorization": olga},
                           timeout=30).json()["commands"]
    assert [c["user"] for c in history if c["command"] == "style stick"] == ["gina"]

    # Revoked in the dialog: gone from the grantee's list.
    revoke = by_testid(owner, "share-revoke", by_testid(owner, "share-list"))
    revoke.click()
    until(owner, lambda: not all_by_testid(owner, "share-row"), "the share revoked")
    grantee.get(server.url + "/")
    until(grantee, lambda: by_testid(grantee, "no-shared").is_displayed(), "nothing shared any more")
    assert all_by_testid(grantee, "shared-session-row") == [] and error_text(grantee) == ""


def test_a_share_link_opens_a_read_only_live_view_without_a_token(gunicorn_server, browser):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60)
    olga = server.token("olga")["Authorization"]
    sid = new_session(server, {"Authorization": olga})
    place(workspace(server, sid), "alanin.pdb", open(alanin_pdb()).read())
    owner_runs(server, {"Authorization": olga}, sid, "open alanin.pdb")

    owner = browser()
    sign_in(owner, server.url + "/sessions/" + sid, olga)
    opened_console(owner)
    by_testid(owner, "share-open").click()
    until(owner, lambda: by_testid(owner, "share-dialog").is_displayed(), "the Share dialog")
    by_testid(owner, "link-create").click()
    url = until(owner, lambda: by_testid(owner, "link-url").get_attribute("value"), "the link shown")
    assert url.startswith(server.url + "/shared/%s#" % sid)
    by_testid(owner, "link-copy").click()
    until(owner, lambda: by_testid(owner, "link-copy").text == "Copied", "copied")
    until(owner, lambda: len(all_by_testid(owner, "link-row")) == 1, "the link listed")
    assert url.rsplit("#", 1)[1] not in by_testid(owner, "link-list").text     # its secret only in the URL shown
    chromium.screenshot(owner, "share-link-made")
    by_testid(owner, "share-close").click()
    assert by_testid(owner, "link-url").get_attribute("value") == ""           # not kept once closed

    viewer = browser()                  # no token in this browser: the link alone
    viewer.get(url)
    opened_console(viewer)
    assert "#" not in viewer.current_url and viewer.current_url == server.url + "/shared/" + sid
    assert viewer.execute_script("return window.location.hash") == ""
    assert not viewer.find_element(By.ID, "sign-in-panel").is_displayed()
    assert absent(viewer, "command-input", "stop-command", "run-in-background", "upload-input", "files",
                  "share-open", "delete-session", "suspend-session", "resume-session") == []
    assert by_testid(viewer, "session-access").text == "read-only view (shared link)"
    # What the buffer held: the owner's command before the page opened.
    until(viewer, lambda: entry_of(viewer, "open alanin.pdb"), "the session's earlier command")

    image = snapshot_version(viewer)
    owner_runs(server, {"Authorization": olga}, sid, "version")
    until(viewer, lambda: [e for e in entry_of(viewer, "version") if "UCSF ChimeraX" in e.text], "the log, live")
    until(viewer, lambda: snapshot_version(viewer) > image, "the image after the owner's command")
    assert error_text(viewer) == ""
    chromium.screenshot(viewer, "share-link-view")

    by_testid(viewer, "scene-toggle").click()        # the 3D scene, too
    until(viewer, lambda: int(by_testid(viewer, "scene").get_attribute("data-meshes") or 0) > 0, "the 3D scene")
    viewer.refresh()                    # the tab kept the link's key (not in the address bar)
    opened_console(viewer)
    assert error_text(viewer) == ""

    # Revoked in the owner's dialog: the viewer is told.
    by_testid(owner, "share-open").click()
    until(owner, lambda: all_by_testid(owner, "link-revoke"), "the link listed")
    by_testid(owner, "link-revoke").click()
    until(owner, lambda: not all_by_testid(owner, "link-row"), "the link revoked")
    until(viewer, lambda: "revoked" in error_text(viewer), "the viewer told the link was revoked")
    no_markup_ran(viewer)


def test_the_admin_page_lists_tokens_and_revokes_them(gunicorn_server, browser):
    server = gunicorn_server(workers=2, SWEEP_INTERVAL=60, TOKEN_CACHE_SECONDS=1)
    alice, boss = server.token("alice")["Authorization"], server.token("boss", "admin")["Authorization"]
    made = requests.post(server.url + "/api/tokens", headers={"Authorization": alice}, timeout=30, json={
        "scopes": ["sessions:read"], "expires_in": 3600, "note": "notebook " + HOSTILE}).json()
    narrow = {"Authorization": "Bearer " + made["token"]}
    assert requests.get(server.url + "/api/sessions", headers=narrow, timeout=30).status_code == 200

    admin = browser()
    sign_in(admin, server.url + "/admin", boss)
    selector = '[data-testid="admin-token-row"][data-token-id="%s"]' % made["id"]
    cells = until(admin, lambda: rows(admin, selector), "alice's token listed")[0]["cells"]
    assert cells[1:5] == ["alice", "user", "sessions:read", "notebook " + HOSTILE]
    assert cells[6].startswith("in ") and cells[7].endswith("ago") and cells[8] == ""    # used once, above
    assert made["token"] not in by_testid(admin, "admin-tokens").text
    no_markup_ran(admin)
    chromium.screenshot(admin, "admin-tokens")
    click_in(admin, selector, "admin-token-revoke")
    revoked = until(admin, lambda: [r for r in rows(admin, selector) if r["data-state"] == "revoked"], "shown revoked")
    assert revoked[0]["cells"][8].endswith("ago") and revoked[0]["cells"][9] == ""          # no Revoke button
    wait_until(lambda: requests.get(server.url + "/api/sessions", headers=narrow, timeout=30).status_code == 401,
               10, message="the revoked token refused")
    assert error_text(admin) == ""
