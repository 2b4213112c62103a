// "/admin": every session, the largest ones, the warm pool, dead-lettered webhooks, every API token and
// recently denied commands (admins only).
import { age, api, busy, el, page, sessionsIn, until } from "./common.js";

const LIVE = new Set(["starting", "active", "suspended"]);

function mib(bytes) {
  return bytes === null || bytes === undefined ? "" : (bytes / 2 ** 20).toFixed(1) + " MiB";
}

function topRow(s, ...figures) {
  return el("tr", { "data-session-id": s.id },
    el("td", {}, el("a", { href: "/sessions/" + s.id }, s.label || s.id.slice(0, 8))),
    el("td", {}, s.user), ...figures.map((text) => el("td", {}, text)));
}

// Events and their errors (a receiver's reply) are data: shown as text, never as markup.
function deadRow(event) {
  return el("tr", { "data-testid": "webhook-dead-row", "data-event-id": event.id },
    el("td", {}, age(event.dead_at) + " ago"), el("td", {}, event.type),
    el("td", {}, event.session ? event.session.slice(0, 8) : ""), el("td", {}, event.attempts),
    el("td", {}, el("code", {}, event.last_error || "")),
    el("td", {}, el("button", {
      "data-testid": "webhook-resend",
      onclick: () => busy("Re-sending " + event.type, () => api(
        "POST", "/api/admin/webhooks/" + encodeURIComponent(event.id) + "/resend")).then(() => refresh(), () => {}),
    }, "Resend")));
}

function ago(iso, none = "") {
  return iso ? age(iso) + " ago" : none;
}

// A token as the API lists it (no secret); its note and names are data: text, never markup.
function tokenRow(t) {
  const expired = t.expires_at && Date.parse(t.expires_at) <= Date.now();
  const live = !t.revoked_at && !expired;
  const scopes = t.scopes.join(" ") + (t.act_as ? ` (acts as ${t.act_as})` : "");
  return el("tr", { "data-testid": "admin-token-row", "data-token-id": t.id, "data-user": t.user,
    "data-state": t.revoked_at ? "revoked" : expired ? "expired" : "live" },
  el("td", {}, t.id), el("td", {}, t.user + (t.created_by && t.created_by !== t.user ? ` (by ${t.created_by})` : "")),
  el("td", {}, t.role), el("td", {}, el("code", {}, scopes)), el("td", {}, t.note || ""),
  el("td", {}, ago(t.created_at)),
  el("td", {}, !t.expires_at ? "never" : expired ? "expired " + ago(t.expires_at) : "in " + until(t.expires_at)),
  el("td", {}, ago(t.last_used, "never")), el("td", {}, ago(t.revoked_at)),
  el("td", {}, live ? el("button", {
    "data-testid": "admin-token-revoke", class: "danger",
    onclick: () => busy(`Revoking token ${t.id} of ${t.user}`, () => api("DELETE", "/api/tokens/" + t.id)).then(() => refresh(), () => {}),
  }, "Revoke") : ""));
}

// Tokens change rarely and their list is every user's: read at load, after a revoke and every
// TOKENS_EVERY-th refresh, not with the sessions every 5 s.
const TOKENS_EVERY = 12;
let refreshes = 0;

async function refresh({ tokens: withTokens = true } = {}) {
  const [sessions, overview, webhooks, tokens] = await Promise.all([sessionsIn([...LIVE]),
    api("GET", "/api/admin/overview"), api("GET", "/api/admin/webhooks"),
    withTokens ? api("GET", "/api/tokens?all=true") : null]);
  const rows = sessions.map((s) => el("tr", {
    "data-testid": "admin-session-row", "data-session-id": s.id, "data-user": s.user,
  },
  el("td", {}, el("a", { href: "/sessions/" + s.id }, s.label || s.id.slice(0, 8))),
  el("td", {}, s.user), el("td", {}, el("span", { class: "status " + s.status }, s.status)),
  el("td", {}, s.host_id || ""), el("td", {}, s.process || ""),
  el("td", {}, s.memory_mb === null || s.memory_mb === undefined ? "" : s.memory_mb + " MiB"),
  el("td", {}, age(s.created_at)),
  el("td", {}, el("button", {
    "data-testid": "admin-end-session", class: "danger",
    onclick: () => busy("Ending " + s.id.slice(0, 8), () => api("DELETE", "/api/sessions/" + s.id)).then(() => refresh(), () => {}),
  }, "End"))));
  document.getElementById("sessions").replaceChildren(...rows);
  document.getElementById("top-memory").replaceChildren(...overview.top_memory.map(
    (s) => topRow(s, mib(s.memory_bytes), mib(s.memory_peak_bytes))));
  document.getElementById("top-cpu").replaceChildren(...overview.top_cpu.map(
    (s) => topRow(s, s.cpu_seconds.toFixed(1) + " s")));
  const pool = Object.entries(overview.pool).map(([state, n]) => `${n} ${state}`).join(", ");
  document.getElementById("pool").textContent = `${pool || "empty"} (target size ${overview.pool_size})`;
  const cache = overview.fetch_cache;
  document.getElementById("fetch-cache").textContent = `${cache.entries} entries, ` +
    `${(cache.bytes / 2 ** 20).toFixed(1)} of ${(cache.max_bytes / 2 ** 20).toFixed(0)} MiB`;
  const counts = webhooks.counts;
  document.getElementById("webhook-counts").textContent = `${counts.pending} pending, ` +
    `${counts.dead} dead, ${counts.delivered} delivered in the last day`;
  document.getElementById("webhooks-dead").replaceChildren(...webhooks.dead.map(deadRow));
  if (tokens) {
    document.getElementById("tokens").replaceChildren(...tokens.tokens.map(tokenRow));
  }
  document.getElementById("denied").replaceChildren(...overview.denied.map((d) => el("tr", {},
    el("td", {}, age(d.at) + " ago"), el("td", {}, d.user), el("td", {}, d.session_id.slice(0, 8)),
    el("td", {}, el("code", {}, d.command)))));
}

page(async (me) => {
  if (me.role !== "admin") {
    document.getElementById("content").hidden = true;
    // The server's own answer (403, with its request id) says why.
    await busy("Loading…", () => api("GET", "/api/admin/overview")).catch(() => {});
    return;
  }
  await busy("Loading…", refresh).catch(() => {});
  setInterval(() => refresh({ tokens: ++refreshes % TOKENS_EVERY === 0 }).catch(() => {}), 5000);
});
