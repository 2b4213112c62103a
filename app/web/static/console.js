// "/sessions/<id>": a command console whose log follows the session live
// (commands in the foreground or the background, a Stop button), the view as
// an image or in 3D, the workspace files; a heartbeat while the page is open.
import { api, busy, el, page, showError } from "./common.js";
import { follow } from "./events.js";
import * as log from "./log.js";
import { showScene } from "./scene.js";

const root = document.getElementById("content");
const id = root.dataset.sessionId;
const base = "/api/sessions/" + id;
const LIVE = new Set(["starting", "active"]);
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

async function refreshImage() {
  const img = document.getElementById("snapshot");
  const width = Math.max(200, Math.min(1600, Math.round(img.parentElement.clientWidth || 640)));
  const blob = await api("GET", `${base}/snapshot?width=${width}&height=${Math.round(width * 0.75)}&supersample=1`);
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
  const { files } = await api("GET", base + "/files");
  document.getElementById("files").replaceChildren(...files.map((f) => el("li", { "data-name": f.name },
    el("span", { class: "name" }, f.name), el("span", { class: "muted" }, ` ${f.size} bytes `),
    el("button", { "data-testid": "download-file", onclick: () => download(f.name) }, "Download"),
    el("button", { "data-testid": "delete-file", onclick: () => busy("Deleting " + f.name,
      () => api("DELETE", `${base}/files/${encodeURIComponent(f.name)}`)).then(refreshFiles, () => {}) }, "Delete"))));
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

function showStatus(record) {
  session = record;
  document.getElementById("title").textContent = record.label || "Session " + id.slice(0, 8);
  const status = document.getElementById("status");
  status.textContent = record.status;
  status.className = "status " + record.status;
  document.getElementById("suspend").hidden = record.status !== "active";
  document.getElementById("resume").hidden = record.status !== "suspended";
  document.getElementById("delete").hidden = !LIVE.has(record.status) && record.status !== "suspended";
  document.getElementById("command").disabled = record.status !== "active";
  showRunning(log.runningEntry());
  const banner = document.getElementById("ended");
  if (record.status === "suspended") {
    banner.textContent = "This session is suspended: its scene and files are kept. Resume it to continue.";
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
  document.getElementById("stop").disabled = !entry || !session || session.status !== "active";
}

async function poll() {
  const was = session && session.status;
  try {
    showStatus(await api("GET", base));
  } catch (error) {
    showDeleted(error);
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

page(async () => {
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
  document.getElementById("suspend").addEventListener("click", () => act("Suspending…", () => api("POST", base + "/suspend")));
  document.getElementById("resume").addEventListener("click", () => act("Resuming…", () => api("POST", base + "/resume")));
  document.getElementById("delete").addEventListener("click", async () => {
    await busy("Ending…", () => api("DELETE", base)).then(() => showDeleted({ code: "session_deleted" }), () => {});
  });
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
  document.getElementById("stop").addEventListener("click", stop);
  await busy("Loading the session…", poll).catch(() => {});
  const live = document.getElementById("live");
  follow(base + "/events", onEvent, (state) => {
    live.textContent = { live: "live", reconnecting: "reconnecting…", ended: "" }[state];
    live.dataset.state = state;
  });
  setInterval(() => poll().catch(() => {}), 5000);
  // The page being open is activity: the idle sweeper leaves the session alone.
  setInterval(() => {
    if (session && session.status === "active") api("PUT", base + "/heartbeat").catch(() => {});
  }, 60000);
});
