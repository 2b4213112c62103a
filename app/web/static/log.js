// The console's output: an entry per command, filled as the session's event
// stream says (ChimeraX's log lines, as text), then rebuilt from the command's
// reply once it is known (its log as sanitized HTML, and its error). Lines
// logged outside any command go in blocks of their own.
import { el, sanitized } from "./common.js";

const entries = new Map();     // command id -> its entry
let running = null;            // the entry whose command the stream says runs
let unnamed = [];              // ours whose ids are not known yet (the stream's start names them)
let latest = null;             // ours, the last sent
let ownWork = false;           // a command of the service's own runs (a snapshot's save): not shown
let changed = () => {};

// `listener(runningEntry | null)` whenever what runs changes.
export function onChange(listener) {
  changed = listener;
}

export function runningEntry() {
  if (running && !running.final) return running;
  return latest && !latest.final && latest.dataset.status === "running" ? latest : null;
}

function output() {
  return document.getElementById("output");
}

// Keeps the newest line in view, unless the reader has scrolled up.
function inView(change) {
  const box = output();
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  change();
  if (atEnd) box.scrollTop = box.scrollHeight;
}

function append(node, before = null) {
  inView(() => (before && before.isConnected ? output().insertBefore(node, before) : output().append(node)));
}

function same(a, b) {
  const norm = (text) => text.trim().replace(/\s*;\s*/g, "; ").replace(/\s+/g, " ");
  return norm(a) === norm(b);
}

function entry(command, id) {
  const node = el("div", { class: "entry running", "data-status": "running", "data-command-id": id },
    el("div", { class: "echo" }, "> " + command), el("div", { class: "lines" }));
  node.command = command;
  if (id) entries.set(id, node);
  return node;
}

// A command of ours, just sent: its entry, at the end.
export function begin(command, background) {
  const node = entry(command, null);
  node.mine = true;
  if (background) node.querySelector(".echo").append(" ", el("span", { class: "tag" }, "background"));
  unnamed.push(node);
  latest = node;
  append(node);
  changed(runningEntry());
  return node;
}

// The service named our command (its reply, or the 202 of one in the background).
export function identify(node, id) {
  if (!id || node.dataset.commandId) return;
  const other = entries.get(id);
  if (other && other !== node) {       // the stream told of it first: its lines move here
    node.querySelector(".lines").replaceWith(other.querySelector(".lines"));
    other.remove();
    if (running === other) running = node;
  }
  node.dataset.commandId = id;
  entries.set(id, node);
  // Commands run in turn: ours sent before this one will not be named any more.
  const at = unnamed.indexOf(node);
  if (at >= 0) unnamed = unnamed.slice(at + 1);
}

// Ours that has not started yet: what the stream shows of others goes before it.
function waiting() {
  return unnamed.find((n) => !n.final && n.isConnected) || null;
}

export function byId(id) {
  return entries.get(id) || null;
}

// Whether the command is one this page sent (its reply, not the stream, refreshes the view).
export function isMine(id) {
  return Boolean(entries.get(id) && entries.get(id).mine);
}

function statusOf(result) {
  if (result.status) return result.status;
  if (result.ok) return "done";
  return result.error && result.error.type === "Interrupted" ? "interrupted" : "failed";
}

function mark(node, status) {
  node.dataset.status = status;
  node.classList.remove("running");
  node.classList.toggle("interrupted", status === "interrupted");
  node.classList.toggle("failed", status === "failed");
}

// The command's reply (the 200 of a waited one, or its state once ended).
export function finish(node, result) {
  if (node.final) return;
  node.final = true;             // the stream's late lines of it are not wanted now
  identify(node, result.id);
  const lines = el("div", { class: "lines" });
  for (const [level, messages] of Object.entries(result.log || {})) {
    for (const message of messages) lines.append(el("div", { class: "log " + level }, sanitized(message)));
  }
  if (result.error && statusOf(result) !== "done") lines.append(el("div", { class: "log error" }, result.error.message));
  // A reply without a log (a refusal, a lost command) keeps what the stream showed.
  const shown = node.querySelector(".lines");
  if (lines.childNodes.length || !shown.childNodes.length) shown.replaceWith(lines);
  mark(node, statusOf(result));
  changed(runningEntry());
}

// The request failed: said in the entry. A refused command did start in
// ChimeraX (the policy decides there) and one that timed out (504) runs on:
// the stream may still name them; others never ran.
export function fail(node, error) {
  inView(() => node.querySelector(".lines").append(el("div", { class: "log error" }, error.message)));
  if (error.status === 504) return;           // its entry goes on following it
  if (error.code !== "command_denied" && error.status < 500) unnamed = unnamed.filter((n) => n !== node);
  finish(node, { ok: false, status: "failed", error: null });
}

// Lines logged outside any command: before our command that has not started.
function loose() {
  const anchor = waiting();
  const last = anchor ? anchor.previousElementSibling : output().lastElementChild;
  if (last && last.classList.contains("loose")) return last;
  const block = el("div", { class: "loose" });
  append(block, anchor);
  return block;
}

// One event of the session's stream.
export function onEvent({ event, data }) {
  if (event === "command.started" && !data.id) {
    ownWork = true;                // the service's, no user's: neither it nor its lines are shown
  } else if (event === "command.ended" && !data.id) {
    ownWork = false;
  } else if (event === "command.started") {
    ownWork = false;
    let node = entries.get(data.id) || unnamed.find((n) => same(n.command, data.command || ""));
    if (node) {
      identify(node, data.id);
    } else {           // someone else's (another tab, the CLI), or one from before this page
      node = entry(data.command || "", data.id);
      append(node, waiting());
    }
    running = node;
    changed(runningEntry());
  } else if (event === "log") {
    if (ownWork || (running && running.final)) return;          // not shown, or its reply is already
    const line = el("div", { class: "log live " + data.level }, String(data.text).replace(/\n$/, ""));     // text, never HTML
    inView(() => (running ? running.querySelector(".lines") : loose()).append(line));
  } else if (event === "command.ended") {
    const node = entries.get(data.id) || running;
    if (node && !node.final) mark(node, data.interrupted ? "interrupted" : "ended");
    if (running === node) running = null;
    changed(runningEntry());
  }
}
