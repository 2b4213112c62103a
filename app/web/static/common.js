// What every page shares: the token (or a share link's secret), API calls,
// errors, the busy spinner, and rendering ChimeraX's HTML log safely.

const TOKEN_KEY = "cxs-token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// A share link's page presents the link's secret instead of a token (and no
// Authorization header at all: the service takes the link only without one).
let shareLink = null;

export function authHeaders() {
  return shareLink ? { "X-Share-Link": shareLink } : { Authorization: "Bearer " + token.get() };
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.requestId = error.request_id || null;
    this.retryAfter = null;
  }
}

// One API call with the bearer token. `body`: an object (JSON) or FormData.
// Answers the parsed JSON, a Blob for binary replies, or null for 204.
export async function api(method, path, body) {
  const headers = authHeaders();
  const init = { method, headers };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    const error = new ApiError(response.status, type.startsWith("application/json") ? await response.json() : null);
    error.retryAfter = Number(response.headers.get("Retry-After")) || null;
    if (response.status === 401 && !shareLink) showSignIn();      // a link's refusal is only shown
    throw error;
  }
  if (response.status === 204) return null;
  if (type.startsWith("application/json")) return response.json();
  return response.blob();
}

// Every session in `statuses`, newest first: the list comes in pages.
export async function sessionsIn(statuses) {
  const query = statuses.map((s) => "status=" + s).join("&");      // pages of the API's default size
  const sessions = [];
  for (;;) {
    const after = sessions.length ? "&starting_after=" + sessions[sessions.length - 1].id : "";
    const page = await api("GET", "/api/sessions?" + query + after);
    sessions.push(...page.sessions);
    if (!page.has_more) return sessions;
  }
}

export function showError(error) {
  const box = document.querySelector("[data-testid=error]");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = error.message + (error.code ? ` (${error.code}` + (error.requestId ? `, request ${error.requestId}` : "") + ")" : "");
  box.hidden = false;
}

let busyCount = 0;
// Runs `work` with the spinner up and its error, if any, shown.
export async function busy(text, work) {
  const box = document.getElementById("busy");
  busyCount += 1;
  document.getElementById("busy-text").textContent = text;
  box.hidden = false;
  try {
    const result = await work();
    showError(null);
    return result;
  } catch (error) {
    showError(error);
    throw error;
  } finally {
    busyCount -= 1;
    if (busyCount === 0) box.hidden = true;
  }
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

// A log message may hold HTML (ChimeraX's notes: tables, emphasis) or text
// with markup-like parts (a model's name). It is parsed in an inert document
// (nothing loads or runs there) and rebuilt from an allowlist of elements
// without their attributes (but a checked few); any other element is shown
// as its markup, as text: a hostile name reads as what it is.
const ALLOWED = new Set(["b", "i", "em", "strong", "br", "p", "pre", "code", "span", "div", "table",
  "thead", "tbody", "tr", "td", "th", "ul", "ol", "li", "a", "sub", "sup", "hr"]);
export function sanitized(html) {
  const inert = new DOMParser().parseFromString(String(html), "text/html");
  const out = document.createDocumentFragment();
  const copy = (source, target) => {
    for (const node of source.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) {
        target.append(node.textContent);
      } else if (node.nodeType === Node.ELEMENT_NODE) {
        const tag = node.tagName.toLowerCase();
        if (!ALLOWED.has(tag)) {
          target.append(node.outerHTML);
          continue;
        }
        const clean = document.createElement(tag);
        if (tag === "td" || tag === "th") {
          for (const name of ["colspan", "rowspan"]) {
            const value = node.getAttribute(name);
            if (value && /^\d{1,3}$/.test(value)) clean.setAttribute(name, value);
          }
        }
        copy(node, clean);
        target.append(clean);
      }
    }
  };
  copy(inert.body, out);
  return out;
}

export function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return duration(seconds);
}

export function until(iso) {
  if (!iso) return "";
  return duration(Math.max(0, (Date.parse(iso) - Date.now()) / 1000));
}

function duration(seconds) {
  if (seconds < 60) return Math.round(seconds) + " s";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

let started = null;
function showSignIn() {
  document.getElementById("sign-in-panel").hidden = false;
  document.getElementById("content").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
}

// Sign-in, then `start(me)` with {user, role} once the token is known good.
export function page(start) {
  started = start;
  document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
    await enter();
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    token.clear();
    showSignIn();
  });
  if (token.get()) enter();
  else showSignIn();
}

// A share link's page ("/shared/<id>#<secret>"): no sign-in; the secret is
// taken from the URL's fragment (which browsers never send to a server) and
// wiped from the address bar and the tab's history entry, so it is not left
// on screen or in a screenshot; the tab keeps it in sessionStorage, as a
// token, so a reload still works. Then `start()`.
export function linkPage(sessionId, start) {
  const key = "cxs-link:" + sessionId;
  const fragment = window.location.hash.slice(1);
  if (fragment) {
    sessionStorage.setItem(key, fragment);
    history.replaceState(history.state, "", window.location.pathname + window.location.search);
  }
  shareLink = sessionStorage.getItem(key);
  document.getElementById("sign-in-panel").hidden = true;
  if (!shareLink) {
    showError(new Error("This link has no key: open the whole link you were given, with the part after #."));
    return;
  }
  document.getElementById("content").hidden = false;
  document.getElementById("who").textContent = "shared link (view only)";
  start();
}

async function enter() {
  let me;
  try {
    me = await busy("Signing in", () => api("GET", "/api/me"));
  } catch (error) {
    if (error.status !== 401) showSignIn();
    return;
  }
  document.getElementById("sign-in-panel").hidden = true;
  document.getElementById("content").hidden = false;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("who").textContent = me.user + (me.role === "admin" ? " (admin)" : "");
  await started(me);
}
