// A session's live event stream (GET /events, Server-Sent Events), read with
// fetch and a stream reader rather than EventSource: EventSource cannot send
// the Authorization header (nor a share link's X-Share-Link), and the token
// stays out of cookies and URLs.
import { authHeaders } from "./common.js";

const LIVE = new Set(["starting", "active", "suspended"]);
const ENDED = new Set([401, 403, 404]);     // no use trying again

// Calls `onEvent({id, event, data})` for each event (data JSON-decoded) and
// `onState("live" | "reconnecting" | "ended")` as the connection changes.
// Reconnects with Last-Event-ID after a drop, so nothing inside the service's
// buffer is missed; stops once the session has ended, or on `close()`.
export function follow(path, onEvent, onState = () => {}) {
  let lastId = null;
  let retry = 2000;
  let status = null;
  let closed = false;
  let controller = null;

  const dispatch = (fields) => {
    if (!fields.data.length) return;
    let data = fields.data.join("\n");
    try {
      data = JSON.parse(data);
    } catch (error) {
      // not JSON: handed on as the text it is
    }
    if (fields.id) lastId = fields.id;
    if (fields.event === "status") status = data.status;
    onEvent({ id: fields.id, event: fields.event || "message", data });
  };

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    let fields = { data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (let line of lines) {
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          dispatch(fields);
          fields = { data: [] };
        } else if (!line.startsWith(":")) {           // ":" starts a comment: the keep-alive
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (name === "data") fields.data.push(value);
          else if (name === "event" || name === "id") fields[name] = value;
          else if (name === "retry" && /^\d+$/.test(value)) retry = Number(value);
        }
      }
    }
  }

  (async () => {
    while (!closed) {
      let wait = retry;
      controller = new AbortController();
      const headers = { ...authHeaders(), Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      try {
        const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
        if (ENDED.has(response.status)) break;
        if (response.ok) {
          onState("live");
          await read(response.body);
        } else {
          // 429: this user's streams are all open (one just closed may hold its place a while)
          wait = Math.max(wait, 1000 * (Number(response.headers.get("Retry-After")) || 0));
        }
      } catch (error) {
        // dropped (or aborted by close()): tried again below unless closed
      }
      if (closed || (status && !LIVE.has(status))) break;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    onState("ended");
  })();

  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
  };
}
