// The shop page's live connection: apply the regions the server re-renders, send cart actions,
// and reconnect when the connection or the session ends. No framework, no build step.
"use strict";

const status = document.getElementById("status");
const ENDED = ["destroyed", "regenerated", "expired", "evicted"];
const WAIT_FOR_NEW_COOKIE_MS = 5000;
let socket = null;
let failures = 0;
let endedAt = null; // when this tab's session ended or got a new id

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
  document.body.dataset.live = state; // the CSS greys out actions unless "live"
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
    endedAt = null;
    apply(JSON.parse(event.data));
  };
  socket.onclose = (event) => {
    socket = null;
    if (event.code === 1000 && ENDED.includes(event.reason)) {
      // Another tab signed in or out (or the session expired). That tab's response brings the
      // cookie this tab shares; until it lands, this tab's cookie names a session that is gone.
      endedAt = Date.now();
      connect();
      return;
    }
    if (event.code === 4401) {
      if (endedAt !== null && Date.now() - endedAt < WAIT_FOR_NEW_COOKIE_MS) {
        setTimeout(connect, 150);
      } else if (endedAt !== null) {
        location.reload(); // no new cookie came (the session expired): the page starts a new session
      } else {
        setStatus("offline", "no session: reload the page");
      }
      return;
    }
    // The server restarted or the store is down (1012, 1013) or the network went: back off.
    setStatus("offline", "offline, reconnecting");
    failures += 1;
    const delay = Math.min(250 * 2 ** failures, 5000);
    setTimeout(connect, delay / 2 + Math.random() * delay / 2);
  };
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-op]");
  if (button && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ op: button.dataset.op, product: button.dataset.product }));
  }
});

connect();
