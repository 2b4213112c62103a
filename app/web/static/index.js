// "/": your sessions, and a new one (with a structure file, optionally); the
// sessions other users share with you, with their owner and your access.
import { age, api, busy, el, page, sessionsIn, until } from "./common.js";

const LIVE = new Set(["starting", "active"]);
const SHARED = new Set(["view", "control"]);

function sharedRow(s) {
  return el("tr", { "data-testid": "shared-session-row", "data-session-id": s.id, "data-owner": s.owner,
    "data-access": s.access, "data-status": s.status },
  el("td", {}, el("a", { href: "/sessions/" + s.id, "data-testid": "shared-session-link" }, s.label || s.id.slice(0, 8))),
  el("td", {}, s.owner), el("td", {}, s.access),
  el("td", {}, el("span", { class: "status " + s.status }, s.status)), el("td", {}, age(s.created_at)));
}

async function refresh() {
  const every = await sessionsIn([...LIVE, "suspended"]);
  const sessions = every.filter((s) => !SHARED.has(s.access));
  const shared = every.filter((s) => SHARED.has(s.access));
  document.getElementById("shared").replaceChildren(...shared.map(sharedRow));
  document.getElementById("no-shared").hidden = shared.length > 0;
  const rows = sessions
    .map((s) => el("tr", { "data-session-id": s.id, "data-status": s.status },
      el("td", {}, el("a", { href: "/sessions/" + s.id, "data-testid": "session-link" }, s.label || s.id.slice(0, 8))),
      el("td", {}, el("span", { class: "status " + s.status }, s.status)),
      el("td", {}, age(s.created_at)),
      el("td", {}, LIVE.has(s.status) ? until(s.expires_at) : ""),
      el("td", { class: "actions" }, ...actions(s))));
  document.getElementById("sessions").replaceChildren(...rows);
  document.getElementById("no-sessions").hidden = rows.length > 0;
}

function actions(s) {
  const act = (label, testid, work) => el("button", {
    "data-testid": testid, onclick: () => busy(label + "…", work).then(refresh, refresh),
  }, label);
  const buttons = [];
  if (s.status === "active") buttons.push(act("Suspend", "suspend-session", () => api("POST", `/api/sessions/${s.id}/suspend`)));
  if (s.status === "suspended") buttons.push(act("Resume", "resume-session", () => api("POST", `/api/sessions/${s.id}/resume`)));
  buttons.push(act("End", "delete-session", () => api("DELETE", `/api/sessions/${s.id}`)));
  return buttons;
}

page(async () => {
  document.getElementById("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = document.getElementById("label").value.trim();
    const file = document.getElementById("structure").files[0];
    let body = label ? { label } : {};
    if (file) {
      body = new FormData();
      if (label) body.append("label", label);
      body.append("file", file, file.name);
    }
    try {
      const session = await busy("Starting ChimeraX…", () => api("POST", "/api/sessions", body));
      window.location.assign("/sessions/" + session.id);
    } catch (error) {
      await refresh();
    }
  });
  await refresh();
  setInterval(() => refresh().catch(() => {}), 5000);
});
