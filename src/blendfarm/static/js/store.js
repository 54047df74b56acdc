// The live farm status: one EventSource on /api/events whose `status` events carry the same JSON
// as GET /api/status. EventSource reconnects by itself; we only report the connection state.

import { API, request } from "./api.js";

const listeners = new Set();
const connectionListeners = new Set();

export const store = {
  status: null, // {projects, nodes, disk, server_id, throughput}
  connection: "connecting", // connecting | live | lost
  lastEvent: 0,
};

function emit() {
  for (const fn of listeners) {
    try {
      fn(store.status);
    } catch (err) {
      console.error(err); // a page bug must not stop the other pages from updating
    }
  }
}

function setConnection(state) {
  if (store.connection === state) return;
  store.connection = state;
  for (const fn of connectionListeners) fn(state);
}

function accept(data) {
  if (!data || typeof data !== "object" || !Array.isArray(data.projects)) return;
  store.status = {
    projects: data.projects,
    nodes: Array.isArray(data.nodes) ? data.nodes : [],
    disk: data.disk || null,
    server_id: data.server_id || null,
    throughput: typeof data.throughput === "number" ? data.throughput : null,
  };
  emit();
}

/** Subscribes to status changes; calls `fn` at once when a status is already known. */
export function subscribe(fn) {
  listeners.add(fn);
  if (store.status) fn(store.status);
  return () => listeners.delete(fn);
}

export function onConnection(fn) {
  connectionListeners.add(fn);
  fn(store.connection);
  return () => connectionListeners.delete(fn);
}

/** Applies a local change at once (e.g. a deleted project) until the next event confirms it. */
export function patch(mutator) {
  if (!store.status) return;
  const next = { ...store.status, projects: [...store.status.projects], nodes: [...store.status.nodes] };
  mutator(next);
  store.status = next;
  emit();
}

let source = null;
let lostTimer = null;

function onStatusEvent(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  store.lastEvent = Date.now();
  clearTimeout(lostTimer);
  setConnection("live");
  accept(data);
}

export function connect() {
  if (source) return;
  source = new EventSource(`${API}/api/events`);
  source.addEventListener("status", onStatusEvent);
  // A server that sends unnamed messages with the same payload works too.
  source.addEventListener("message", onStatusEvent);
  source.addEventListener("open", () => {
    clearTimeout(lostTimer);
    setConnection("live");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. a non-event-stream answer): start over in a while.
      setConnection("lost");
      source = null;
      setTimeout(connect, 5000);
      return;
    }
    // CONNECTING: the browser retries by itself; only call it lost if that takes a moment.
    clearTimeout(lostTimer);
    lostTimer = setTimeout(() => setConnection("lost"), 2500);
  });

  // The first event normally arrives at once; this only bridges a slow event stream.
  request("GET", "/api/status")
    .then((data) => {
      if (!store.lastEvent) accept(data);
    })
    .catch(() => {
      /* the connection state already tells the user */
    });
}
