// "/sessions/<id>": a command console whose log follows the session live
// (commands in the foreground or the background, a Stop button), the view as
// an image or in 3D, the workspace files; a heartbeat while the page is open.
// What the page offers follows the caller's access: the owner (or an admin)
// everything and the Share dialog; a grantee with control the console but not
// sharing, suspending or ending; one with view, and a share link's page
// ("/shared/<id>", read-only, no token), only what shows the session.
import { api, busy, el, linkPage, page, showError } from "./common.js";
import { follow } from "./events.js";
import * as log from "./log.js";
import { showScene } from "./scene.js";
import { setUpShareDialog } from "./share.js";

const root = document.getElementById("content");
const id = root.dataset.sessionId;
const base = "/api/sessions/" + id;
const LIVE = new Set(["starting", "active"]);
const viaLink = root.dataset.sharedLink === "true";
let access = null;                 // owner, control or view: the session's, once read
const history = [];
let recall = 0;
let session = null;
let imageUrl = null;
const background = new Set();      // ids of our commands in the background, not yet ended

// In the foreground the reply is awaited (up to COMMAND_TIMEOUT); in the
// background it returns at once and the stream shows its progress.
async function run(command) {
  history.push(command);
  recall = history.length;
  const inBackground = document.getElementById("background").checked;
  const entry = log.begin(command, inBackground);
  if (inBackground) {
    try {
      const started = await api("POST", base + "/commands", { command, wait: false });
      log.identify(entry, started.id);
      background.add(started.id);
      if (entry.dataset.status !== "running") settle(started.id);      // the stream saw it end already
    } catch (error) {
      log.fail(entry, error);
    }
    return;
  }
  try {
    log.finish(entry, await busy("Running " + command, () => api("POST", base + "/commands", { command })));
  } catch (error) {
    log.fail(entry, error);
  }
  await refreshView();
}

async function refreshView() {
  await Promise.allSettled([refreshImage(), refreshFiles()]);
  if (!document.getElementById("scene").hidden) await showScene(base).catch(showError);
}

// Someone else's command changed the view (another user, tab or script): one
// refresh once the session has been quiet for QUIET ms (a script's commands,
// or a reconnected stream's replay, come in bursts: one image for all of
// them, and fewer renders of ours in the way of their next command), one at
// a time, and one more if more ended meanwhile.
const QUIET = 300;
let quietTimer = null;
let refreshing = null;
let again = false;
function refreshWhenQuiet() {
  clearTimeout(quietTimer);
  quietTimer = setTimeout(refreshSoon, QUIET);
}

function refreshSoon() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = refreshView().finally(() => {
    refreshing = null;
    if (again) {
      again = false;
      refreshSoon();
    }
  });
}

// A command of ours in the background ended: its reply (the service records
// it just after ChimeraX ends it: asked again a few times), then the view it changed.
const settling = new Set();
async function settle(id, tries = 40) {
  if (settling.has(id)) return;
  settling.add(id);
  try {
    for (let i = 0; i < tries && background.has(id); i += 1) {
      if (i) await new Promise((resolve) => setTimeout(resolve, 250));
      const state = await api("GET", `${base}/commands/${id}`).catch(() => null);
      if (state && state.status !== "running") {
        background.delete(id);
        if (log.byId(id)) log.finish(log.byId(id), state);
        await refreshView();
      }
    }
  } finally {
    settling.delete(id);
  }
}

function onEvent(event) {
  log.onEvent(event);
  if (event.event === "command.ended" && background.has(event.data.id)) settle(event.data.id);
  // Not one of this page's (whose reply refreshes it), nor the service's own (no id: each image's save).
  else if (event.event === "command.ended" && event.data.id && !log.isMine(event.data.id)) refreshWhenQuiet();
  else if (event.event === "command.started" && event.data.id) clearTimeout(quietTimer);    // its end will ask
  if (event.event === "status" && session && event.data.status !== session.status) poll().catch(() => {});
}

async function stop() {
  const entry = log.runningEntry();
  const id = entry && entry.dataset.commandId;
  try {
    const reply = await busy("Stopping…", () => api("POST", base + "/interrupt", id ? { id } : {}));
    if (reply.session === "ended") await poll();
  } catch (error) {
    if (error.code === "not_running") showError(null);      // it ended meanwhile
  }
}

// A session renders one thing at a time: another page's image (a viewer's, the
// owner's) or a command may hold it, answered 409 session_busy; asked again
// after its Retry-After, a few times.
async function snapshot(path, tries = 5) {
  for (let i = 1; ; i += 1) {
    try {
      return await api("GET", path);
    } catch (error) {
      if (error.code !== "session_busy" || i >= tries) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1000 * Math.min(error.retryAfter || 0.5, 5)));
    }
  }
}

async function refreshImage() {
  const img = document.getElementById("snapshot");
  const width = Math.max(200, Math.min(1600, Math.round(img.parentElement.clientWidth || 640)));
  const blob = await snapshot(`${base}/snapshot?width=${width}&height=${Math.round(width * 0.75)}&supersample=1`);
  const previous = imageUrl;
  imageUrl = URL.createObjectURL(blob);
  await new Promise((resolve) => {
    img.onload = img.onerror = resolve;
    img.src = imageUrl;
  });
  img.dataset.version = String(Number(img.dataset.version || 0) + 1);    // a hook for tests
  if (previous) URL.revokeObjectURL(previous);
}

async function refreshFiles() {
  if (viaLink) return;               // a link shows the session, not its files
  const { files } = await api("GET", base + "/files");
  document.getElementById("files").replaceChildren(...files.map((f) => el("li", { "data-name": f.name },
    el("span", { class: "name" }, f.name), el("span", { class: "muted" }, ` ${f.size} bytes `),
    el("button", { "data-testid": "download-file", onclick: () => download(f.name) }, "Download"),
    access === "owner" ? el("button", { "data-testid": "delete-file", onclick: () => busy("Deleting " + f.name,
      () => api("DELETE", `${base}/files/${encodeURIComponent(f.name)}`)).then(refreshFiles, () => {}) }, "Delete") : "")));
}

async function download(name) {
  const blob = await busy("Downloading " + name, () => api("GET", `${base}/files/${encodeURIComponent(name)}`));
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// Once, from the first reading of the session: what this caller may do here.
// What their access does not allow is taken out of the page, not just hidden.
function applyAccess(record) {
  access = viaLink ? "view" : record.access || "view";      // none: a deleted session, unread
  const shownAccess = { view: "view only", control: "control" }[access];
  document.getElementById("access").textContent = viaLink ? "read-only view (shared link)"
    : shownAccess ? `shared by ${record.owner}: ${shownAccess}` : "";
  if (access !== "owner" && access !== "control") document.querySelectorAll(".acts").forEach((node) => node.remove());
  if (access === "owner" && !viaLink) setUpShareDialog(base);
  else document.querySelectorAll("#share, #suspend, #resume, #delete, #share-dialog").forEach((node) => node.remove());
  // Before the buttons show (the caller shows them next): a click that comes
  // while the first image and files still load must not find them dead.
  if (access === "owner" || access === "control") setUpCommands();
  if (access === "owner") setUpOwnerActions();
}

function show(elementId, visible) {
  const node = document.getElementById(elementId);
  if (node) node.hidden = !visible;
}

function showStatus(record) {
  session = record;
  if (access === null) applyAccess(record);
  document.getElementById("title").textContent = record.label || "Session " + id.slice(0, 8);
  const status = document.getElementById("status");
  status.textContent = record.status;
  status.className = "status " + record.status;
  show("suspend", record.status === "active");
  show("resume", record.status === "suspended");
  show("delete", LIVE.has(record.status) || record.status === "suspended");
  const command = document.getElementById("command");
  if (command) command.disabled = record.status !== "active";
  showRunning(log.runningEntry());
  const banner = document.getElementById("ended");
  if (record.status === "suspended") {
    banner.textContent = "This session is suspended: its scene and files are kept. " + (
      access === "owner" ? "Resume it to continue." : "Its owner can resume it.");
  } else if (record.end_reason === "deleted") {
    banner.textContent = "This session was ended (deleted by its owner or an admin); its files are gone.";
  } else if (!LIVE.has(record.status)) {
    banner.textContent = `This session has ended (${record.status}: ${record.end_reason || "no reason given"}).`;
  }
  banner.hidden = LIVE.has(record.status);
}

function showDeleted(error) {
  if (error.code !== "session_deleted") throw error;
  // Deleted (here, in another tab or by an admin): the session is gone.
  showStatus({ ...(session || {}), status: "terminated", end_reason: "deleted" });
}

function showRunning(entry) {
  const stopButton = document.getElementById("stop");
  if (stopButton) stopButton.disabled = !entry || !session || session.status !== "active";
}

async function poll() {
  const was = session && session.status;
  try {
    showStatus(await api("GET", base));
  } catch (error) {
    // A link revoked or expired, a share taken back: said (the page keeps what it showed).
    if (session && (error.status === 401 || error.status === 403)) showError(error);
    else showDeleted(error);
    return;
  }
  if (was !== "active" && session.status === "active") await Promise.allSettled([refreshImage(), refreshFiles()]);
  for (const id of background) settle(id, 1);        // should the stream have missed an end
}

async function act(label, work) {
  try {
    showStatus(await busy(label, work));
  } catch (error) {
    return;
  }
  while (session.status === "starting") {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await poll();
  }
}

function setUpCommands() {
  const input = document.getElementById("command");
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && input.value.trim()) {
      const command = input.value;
      input.value = "";
      run(command);
    } else if (event.key === "ArrowUp" && recall > 0) {
      input.value = history[--recall];
      event.preventDefault();
    } else if (event.key === "ArrowDown" && recall < history.length) {
      recall += 1;
      input.value = history[recall] || "";
      event.preventDefault();
    }
  });
  document.getElementById("upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    await busy("Uploading " + file.name, () => api("POST", base + "/files", form)).catch(() => {});
    event.target.value = "";
    await refreshFiles();
  });
  document.getElementById("stop").addEventListener("click", stop);
}

function setUpOwnerActions() {
  document.getElementById("suspend").addEventListener("click", () => act("Suspending…", () => api("POST", base + "/suspend")));
  document.getElementById("resume").addEventListener("click", () => act("Resuming…", () => api("POST", base + "/resume")));
  document.getElementById("delete").addEventListener("click", async () => {
    await busy("Ending…", () => api("DELETE", base)).then(() => showDeleted({ code: "session_deleted" }), () => {});
  });
}

async function start() {
  const tab = (scene) => {
    document.getElementById("scene").hidden = !scene;
    document.getElementById("snapshot").hidden = scene;
    document.getElementById("show-scene").classList.toggle("active", scene);
    document.getElementById("show-image").classList.toggle("active", !scene);
  };
  document.getElementById("show-image").addEventListener("click", () => tab(false));
  document.getElementById("show-scene").addEventListener("click", () => busy("Loading the 3D scene…", async () => {
    tab(true);
    await showScene(base);
  }).catch(() => {}));
  log.onChange(showRunning);
  await busy("Loading the session…", poll).catch(() => {});
  if (access === null) return;             // not readable (refused, unknown): the error says why
  const live = document.getElementById("live");
  follow(base + "/events", onEvent, (state) => {
    live.textContent = { live: "live", reconnecting: "reconnecting…", ended: "" }[state];
    live.dataset.state = state;
  });
  setInterval(() => poll().catch(() => {}), 5000);
  // The page being open is activity: the idle sweeper leaves the session alone. (Heartbeats are
  // control: a viewer's page watches, it does not keep the session alive.)
  setInterval(() => {
    if (session && session.status === "active" && (access === "owner" || access === "control")) {
      api("PUT", base + "/heartbeat").catch(() => {});
    }
  }, 60000);
}

if (viaLink) linkPage(id, start);
else page(start);
