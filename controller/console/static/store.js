// Shared state: who is signed in, and the pending queue (the top bar, the title badge, the fleet's per-sandbox
// counts, the inbox and the queue page all read it). The queue refreshes on approval events and on a timer.

import { approvals } from "./api.js";
import { hub } from "./live.js";

const RANKS = { viewer: 0, approver: 1, operator: 2, admin: 3 };

export const session = { user: null };

/** Whether the signed-in user holds `role` or a higher one. */
export function can(role) {
  const user = session.user;
  return Boolean(user) && (RANKS[user.role] ?? -1) >= RANKS[role];
}

const REFRESH_MS = 10_000;

class PendingQueue {
  constructor() {
    this.items = [];
    this.total = 0;
    this.loaded = false;
    this.decidedHere = new Set();
    this.listeners = new Set();
    this.timer = null;
    this.debounce = null;
    this.inflight = null;
    this.again = false;
    this.unsubscribe = null;
  }

  start() {
    this.unsubscribe = hub.on(["approval"], () => this.refreshSoon());
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    return this.refresh();
  }

  stop() {
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    if (this.unsubscribe) this.unsubscribe();
    this.items = [];
    this.total = 0;
    this.loaded = false;
  }

  refreshSoon() {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.refresh(), 120);
  }

  /** Fetch the queue; a refresh asked for while one runs runs once more after it. */
  async refresh() {
    if (this.inflight) {
      this.again = true;
      return this.inflight;
    }
    this.inflight = (async () => {
      try {
        const page = await approvals.list({ status: "pending", limit: 500 });
        this.items = page.items;
        this.total = page.pending ?? page.items.length;
        this.loaded = true;
        this.notify();
      } catch (e) {
        console.warn("could not refresh the approval queue", e);
      }
    })();
    await this.inflight;
    this.inflight = null;
    if (this.again) {
      this.again = false;
      await this.refresh();
    }
  }

  /** Drop an item at once (decided here), before the server's event confirms it. */
  forget(id) {
    this.decidedHere.add(id);
    const before = this.items.length;
    this.items = this.items.filter((item) => item.id !== id);
    if (this.items.length !== before) {
      this.total = Math.max(0, this.total - 1);
      this.notify();
    }
  }

  notify() {
    for (const fn of this.listeners) fn(this);
  }

  subscribe(fn) {
    this.listeners.add(fn);
    if (this.loaded) fn(this);
    return () => this.listeners.delete(fn);
  }

  ofKind(kind) {
    return this.items.filter((item) => item.kind === kind);
  }

  bySandbox() {
    const counts = new Map();
    for (const item of this.items) counts.set(item.sandbox_id, (counts.get(item.sandbox_id) || 0) + 1);
    return counts;
  }
}

export const pending = new PendingQueue();
