// The shop page's live connection: apply the regions the server re-renders, send cart actions,
// and reconnect when the connection or the session ends. No framework, no build step.
"use strict";

const status = document.getElementById("status");
const ENDED = ["destroyed", "regenerated", "expired"];
let socket = null;
let failures = 0;

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

function apply(message) {
  for (const [name, html] of Object.entries(message.regions)) {
    const region = document.querySelector(`[data-live="${name}"]`);
    if (region) region.innerHTML = html;
  }
  document.body.dataset.version = message.version;
  if (ENDED.includes(message.reason)) setStatus("connecting", "session " + message.reason);
  else setStatus("live", "live \u00b7 v" + message.version);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/live");
  socket.onmessage = (event) => {
    failures = 0;
    apply(JSON.parse(event.data));
  };
  socket.onclose = (event) => {
    socket = null;
    if (event.code === 1000 && ENDED.includes(event.reason)) {
      // The session ended or got a new id: the tab that did it has (or is about to have) the new
      // cookie, which this tab shares, so reconnect at once.
      connect();
      return;
    }
    setStatus("offline", "offline, reconnecting");
    failures += 1;
    const delay = Math.min(100 * 2 ** failures, 5000);
    if (event.code === 4401 && failures >= 3) {
      // Still no session after a few tries (it expired, say): start a new one.
      fetch("/session", { method: "POST" }).finally(() => setTimeout(connect, delay));
    } else {
      setTimeout(connect, delay);
    }
  };
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-op]");
  if (button && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ op: button.dataset.op, product: button.dataset.product }));
  }
});

connect();
