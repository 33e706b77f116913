// Live events over Server-Sent Events. EventSource reconnects by itself and sends Last-Event-ID, so a dropped
// connection loses nothing; views still refetch on a timer in case a kind never arrives.

import { qs } from "./api.js";

export const FLEET_KINDS = ["lifecycle", "action", "approval", "resources", "agent"];
export const ALL_KINDS = [...FLEET_KINDS, "stdout", "stderr", "log"];

/**
 * Open one event stream. `onEvent(event)` gets the parsed payload {id, sandbox_id, kind, data, ts};
 * `onState(state)` gets "connecting" | "live" | "reconnecting". Returns a function that closes it.
 * EventSource retries dropped connections itself; when it gives up (an error status), the stream is opened
 * again a little later from the last id it saw, so nothing is missed either way.
 */
export function openStream({ sandbox, kinds, after }, onEvent, onState = () => {}) {
  const wanted = new Set(kinds);
  let lastId = after;
  let source = null;
  let retry = 0;
  let closed = false;
  const handle = (message) => {
    let payload;
    try {
      payload = JSON.parse(message.data);
    } catch {
      return;
    }
    if (message.lastEventId) lastId = message.lastEventId;
    if (payload && wanted.has(payload.kind)) onEvent(payload);
  };
  const connect = () => {
    const url = `/api/v1/events${qs({ sandbox, kinds: sandbox ? undefined : kinds.join(","), after: lastId })}`;
    source = new EventSource(url);
    for (const kind of kinds) source.addEventListener(kind, handle);
    source.onopen = () => onState("live");
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        onState("reconnecting");
        return;
      }
      onState("reconnecting");
      if (!closed) retry = setTimeout(connect, 3000);
    };
  };
  onState("connecting");
  connect();
  return () => {
    closed = true;
    clearTimeout(retry);
    if (source) source.close();
  };
}

/** The one fleet-wide stream the whole app shares (top bar, fleet page, inbox), with subscribers per kind. */
export class Hub {
  constructor() {
    this.listeners = new Map();
    this.stateListeners = new Set();
    this.state = "closed";
    this.close = null;
  }

  start() {
    if (this.close) return;
    this.close = openStream(
      { kinds: FLEET_KINDS, after: "$" },
      (event) => this.dispatch(event),
      (state) => this.setState(state),
    );
  }

  stop() {
    if (this.close) this.close();
    this.close = null;
    this.setState("closed");
  }

  setState(state) {
    this.state = state;
    for (const fn of this.stateListeners) fn(state);
  }

  dispatch(event) {
    for (const fn of this.listeners.get(event.kind) || []) {
      try {
        fn(event);
      } catch (e) {
        console.error("event handler failed", e);
      }
    }
  }

  /** Call fn for each event of these kinds; returns the unsubscribe function. */
  on(kinds, fn) {
    for (const kind of kinds) {
      if (!this.listeners.has(kind)) this.listeners.set(kind, new Set());
      this.listeners.get(kind).add(fn);
    }
    return () => kinds.forEach((kind) => this.listeners.get(kind).delete(fn));
  }

  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.state);
    return () => this.stateListeners.delete(fn);
  }
}

export const hub = new Hub();
