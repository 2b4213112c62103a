// The Share dialog of a session's page (its owner's and admins'): share with
// a user (view or control, optionally expiring), the live shares with Revoke,
// and secret links to a read-only live view, each URL shown once.
import { age, api, busy, el, until } from "./common.js";

const $ = (id) => document.getElementById(id);

// Errors show inside the dialog: the page's own error box is behind it.
function showDialogError(error) {
  const box = $("share-error");
  box.textContent = error ? error.message + (error.code ? ` (${error.code})` : "") : "";
  box.hidden = !error;
}

async function attempt(label, work) {
  try {
    const result = await busy(label, work);
    showDialogError(null);
    return result;
  } catch (error) {
    showDialogError(error);
    return undefined;
  }
}

function expiry(iso) {
  return iso ? "in " + until(iso) : "never";
}

function revokeButton(testid, label, work, after) {
  return el("button", { "data-testid": testid, class: "danger", onclick: () => attempt(label, work).then(after) },
    "Revoke");
}

// User names and ids are data: text nodes (el), never markup.
async function refresh(base) {
  const [{ shares }, { links }] = await Promise.all([api("GET", base + "/shares"), api("GET", base + "/share-links")]);
  $("share-list").replaceChildren(...shares.map((s) => el("tr", {
    "data-testid": "share-row", "data-share-id": s.id, "data-user": s.user, "data-access": s.access,
  }, el("td", {}, s.user), el("td", {}, s.access), el("td", {}, age(s.created_at) + " ago"),
  el("td", {}, expiry(s.expires_at)),
  el("td", {}, revokeButton("share-revoke", "Revoking " + s.user + "'s access",
    () => api("DELETE", `${base}/shares/${encodeURIComponent(s.id)}`), () => refresh(base))))));
  if (!shares.length) $("share-list").append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "Not shared with anyone.")));
  $("link-list").replaceChildren(...links.map((l) => el("tr", { "data-testid": "link-row", "data-link-id": l.id },
    el("td", {}, el("code", {}, l.id.slice(0, 8))), el("td", {}, age(l.created_at) + " ago"),
    el("td", {}, expiry(l.expires_at)),
    el("td", {}, revokeButton("link-revoke", "Revoking the link",
      () => api("DELETE", `${base}/share-links/${encodeURIComponent(l.id)}`), () => refresh(base))))));
}

async function copy(url) {
  try {
    await navigator.clipboard.writeText(url);
  } catch (error) {
    // No clipboard API here (a plain-http origin other than localhost): the selected text, the old way.
    $("link-url").select();
    document.execCommand("copy");
  }
  $("link-copy").textContent = "Copied";
}

export function setUpShareDialog(base) {
  const dialog = $("share-dialog");
  $("share").hidden = false;
  $("share").addEventListener("click", async () => {
    showDialogError(null);
    $("link-made").hidden = true;
    $("link-url").value = "";
    dialog.showModal();
    await attempt("Loading the shares…", () => refresh(base));
  });
  $("share-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    $("link-url").value = "";        // the secret is not kept on the page once the dialog is closed
    $("link-made").hidden = true;
  });
  $("share-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { user: $("share-user").value.trim(), access: $("share-access").value };
    if ($("share-expires").value) body.expires_in = Number($("share-expires").value);
    const made = await attempt("Sharing with " + body.user, () => api("POST", base + "/shares", body));
    if (made) {
      $("share-user").value = "";
      await attempt("Loading the shares…", () => refresh(base));
    }
  });
  $("link-create").addEventListener("click", async () => {
    const body = $("link-expires").value ? { expires_in: Number($("link-expires").value) } : {};
    const made = await attempt("Making a link", () => api("POST", base + "/share-links", body));
    if (!made) return;
    $("link-url").value = made.url;
    $("link-copy").textContent = "Copy";
    $("link-made").hidden = false;
    $("link-url").select();
    await attempt("Loading the shares…", () => refresh(base));
  });
  $("link-copy").addEventListener("click", () => copy($("link-url").value));
}
