// Live events over the API's WebSocket (/ws/{clientId}): one connection per page load, any
// number of executions followed on it. Each subscription replays the execution's events
// after the last one it delivered, so a dropped connection loses nothing: it reconnects
// with backoff and subscribes again from there.

import { storedKey } from "./api.js";

const clientId = `ui-${Math.random().toString(36).slice(2, 12)}`;
const follows = new Map(); // executionId -> {handlers: Set, lastEventId}
let socket = null;
let open = false;
let retry = 500;
const listeners = new Set();

function url() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const key = storedKey();
  const token = key ? `?token=${encodeURIComponent(key)}` : "";
  return `${scheme}://${location.host}/ws/${clientId}${token}`;
}

function send(message) {
  if (open) socket.send(JSON.stringify(message));
}

function subscribeMessage(executionId, follow) {
  const message = { type: "subscribe", executionId };
  if (follow.lastEventId) message.lastEventId = follow.lastEventId;
  return message;
}

function setState(value) {
  open = value;
  for (const listener of listeners) listener(value);
}

export function connect() {
  if (socket) return;
  socket = new WebSocket(url());
  socket.onopen = () => {
    retry = 500;
    setState(true);
    for (const [id, follow] of follows) send(subscribeMessage(id, follow));
  };
  socket.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    const follow = event.executionId && follows.get(event.executionId);
    if (!follow) return;
    if (event.id) follow.lastEventId = event.id;
    for (const handler of follow.handlers) handler(event);
  };
  socket.onclose = () => {
    socket = null;
    setState(false);
    if (follows.size || listeners.size) {
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    }
  };
}

// Follow one execution: `handler(event)` for each of its events, replayed from the first
// (for the first follower: a second one of the same execution gets the events from then on;
// a page follows an execution once). Returns the function that stops following.
export function follow(executionId, handler) {
  let entry = follows.get(executionId);
  if (!entry) {
    entry = { handlers: new Set(), lastEventId: null };
    follows.set(executionId, entry);
    send(subscribeMessage(executionId, entry));
  }
  entry.handlers.add(handler);
  connect();
  return () => {
    entry.handlers.delete(handler);
    if (!entry.handlers.size && follows.get(executionId) === entry) {
      follows.delete(executionId);
      send({ type: "unsubscribe", executionId });
    }
  };
}

// `listener(open)` whenever the connection opens or drops; returns the unsubscribe function.
export function onConnection(listener) {
  listeners.add(listener);
  listener(open);
  connect();
  return () => listeners.delete(listener);
}
