// A sandbox's egress: each connection and service call it made through its egress door, newest first, with what
// decided it and what it carried, and the sandbox's usage against its budget. Read from the API, then kept live
// from the page's event stream (`action` events for new and decided calls, `egress` events when a call ends);
// changes are drawn once per animation frame, and the page reads everything again on its timer as a fallback.

import { api } from "../api.js";
import { badge, emptyState, fmtBytes, fmtTime, h, parseTime, setText } from "../ui.js";

export const EGRESS_TOOLS = ["net.connect", "http.request", "model.request"];
const TOOLS = new Set(EGRESS_TOOLS);
const SHOWN = 200;
const USAGE_AFTER_MS = 400; // calls that end together cost one read of the usage
const EARLY_KEPT = 500;
const COUNT = new Intl.NumberFormat();

/** A call as the panel shows it, from an action of the API. */
function fromAction(a) {
  const reason = (a.decision && a.decision.reason) || (a.verdict && a.verdict.reason) || a.message || null;
  return {
    id: a.id, tool: a.tool, args: a.args || {}, status: a.status, decided_by: a.decided_by, reason,
    approval_id: a.approval_id, created_at: a.created_at, result: a.result || null,
  };
}

/** A call from an `action` event (a new call, or a person's decision on one). */
function fromEvent(event) {
  const d = event.data;
  return {
    id: d.action_id, tool: d.tool, args: d.args || {}, status: d.status, decided_by: d.decided_by,
    reason: d.reason || null, approval_id: d.approval_id, created_at: event.ts, result: null,
  };
}

/** A newer view of a call over an older one. A call only moves from pending to decided and gets its result once,
 * so an answer that left the server before an event arrived cannot take either back. */
function merge(old, next) {
  if (!old) return next;
  const merged = { ...old };
  for (const [key, value] of Object.entries(next)) if (value !== undefined && value !== null) merged[key] = value;
  if (old.status && old.status !== "pending" && next.status === "pending") {
    Object.assign(merged, { status: old.status, decided_by: old.decided_by, reason: old.reason });
  }
  merged.created_at = old.created_at ?? next.created_at; // a decision's event carries the decision's time
  return merged;
}

/** Where the call went, in one line: host:port, the URL, or the service and model. */
export function destination(call) {
  const a = call.args;
  const text = (value) => (value === undefined || value === null ? "" : String(value));
  if (call.tool === "net.connect") return `${text(a.host)}:${text(a.port)}`;
  if (call.tool === "model.request") return [text(a.service), text(a.model) || "(no model named)"].join(" · ");
  const url = text(a.url) || `${text(a.host)}:${text(a.port)}`;
  return [a.service ? text(a.service) : null, text(a.method), url].filter(Boolean).join(" ");
}

function cell(label, cls, ...children) {
  return h("td", { class: cls, dataset: { label } }, ...children);
}

function decisionCell(call) {
  const pending = call.status === "pending";
  const by = pending ? "a person" : call.decided_by || "—";
  const why = pending ? "waiting for a person to decide" : call.reason || "no reason given";
  return h("td", { class: "egress-decision", dataset: { label: "Decision" }, title: `${call.status} by ${by}: ${why}` },
    h("span", {}, badge(call.status), pending
      ? call.approval_id && h("a", { class: "egress-by", href: `#/approvals/${Number(call.approval_id)}` }, "decide")
      : h("span", { class: "egress-by" }, call.decided_by || "")));
}

function row(call) {
  const r = call.result;
  const open = !r && call.status === "allowed";
  const bytes = (value) => (r ? fmtBytes(value ?? 0) : open ? "…" : "—");
  const tokens = r && r.tokens ? `${COUNT.format(r.tokens.input_tokens ?? 0)} / ${COUNT.format(r.tokens.output_tokens ?? 0)}` : "—";
  const status = r && r.error ? "error" : r && r.status ? String(r.status) : "—";
  const where = destination(call);
  const when = parseTime(call.created_at);
  const detail = call.tool === "model.request" ? `${where}\n${call.args.method || ""} ${call.args.path || ""}` : where;
  return h("tr", { class: `st-${call.status}`, dataset: { actionId: call.id } },
    cell("Time", "egress-time", h("time", { datetime: when ? when.toISOString() : undefined }, fmtTime(call.created_at))),
    cell("Tool", undefined, h("span", { class: "mono" }, call.tool)),
    cell("Destination", "egress-dest-cell", h("span", { class: "mono egress-dest", title: detail }, where)),
    decisionCell(call),
    cell("In", "c-num", h("span", { title: open ? "still open" : undefined }, bytes(r && r.bytes_in))),
    cell("Out", "c-num", h("span", {}, bytes(r && r.bytes_out))),
    cell("HTTP", `c-num${r && (r.error || r.status >= 400) ? " tone-bad" : ""}`,
      h("span", { title: r && r.error ? r.error : undefined }, status)),
    cell("Tokens in / out", "c-num", h("span", { title: r && r.tokens ? "input / output tokens" : undefined }, tokens)));
}

/** One figure of the usage line, with its budget (0 is no limit) and a tone as it nears it. */
function figure(label, used, limit, shown = COUNT.format(used), limitShown = COUNT.format(limit)) {
  const share = limit ? used / limit : 0;
  const tone = share >= 1 ? " tone-bad" : share >= 0.8 ? " tone-warn" : "";
  return h("span", { class: `usage-figure${tone}` }, h("span", { class: "muted" }, `${label} `),
    h("strong", { class: "num" }, shown), h("span", { class: "muted" }, limit ? ` of ${limitShown}` : " (no limit)"));
}

function usageLine(u) {
  const b = u.budget || {};
  const moved = u.bytes_in + u.bytes_out;
  return [
    figure("Model requests", u.model_requests, b.model_requests),
    figure("Tokens", u.input_tokens + u.output_tokens, b.model_tokens,
      `${COUNT.format(u.input_tokens)} in · ${COUNT.format(u.output_tokens)} out`),
    figure("Connections", u.connections, b.connections),
    figure("Traffic", moved, b.bytes, `${fmtBytes(u.bytes_in)} in · ${fmtBytes(u.bytes_out)} out`, fmtBytes(b.bytes)),
  ];
}

export class EgressPanel {
  constructor(sandboxId) {
    this.id = sandboxId;
    this.calls = new Map(); // action id -> call
    this.rows = new Map(); // action id -> its <tr>
    this.early = new Map(); // results of calls not seen yet (an answer still on its way)
    this.dirty = new Set();
    this.loaded = false;
    this.frame = 0;
    this.usageTimer = 0;
    this.usageRead = 0;
    this.count = h("span", { class: "muted small" });
    this.usage = h("p", { class: "egress-usage" },
      h("span", { class: "muted" }, "Loading usage…"));
    this.body = h("tbody");
    this.empty = emptyState("No connections or model calls yet",
      "Every connection and service call the sandbox makes goes through the controller and appears here.");
    this.error = h("p", { class: "form-error pad" });
    this.table = h("table", { class: "table rt egress-table" },
      h("thead", {}, h("tr", {}, ["Time", "Tool", "Destination", "Decision", "In", "Out", "HTTP", "Tokens in / out"]
        .map((name, i) => h("th", { scope: "col", class: i >= 4 ? "c-num" : undefined }, name)))),
      this.body);
    this.el = h("section", { class: "panel panel-egress", "aria-labelledby": "egress-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "egress-title" }, "Egress"), this.count),
      this.usage, this.error, h("div", { class: "table-wrap egress-wrap" }, this.table, this.empty));
    this.table.hidden = true;
    this.empty.hidden = true;
  }

  /** Read the calls and the usage from the API (on open, and on the page's fallback timer). */
  load() {
    this.loadCalls();
    this.loadUsage();
  }

  async loadCalls() {
    try {
      const page = await api.get("/api/v1/actions", { sandbox: this.id, tool: EGRESS_TOOLS.join(","), limit: SHOWN });
      for (const action of page.items) this.put(fromAction(action));
      setText(this.error, "");
      this.loaded = true;
      this.drawSoon();
    } catch (e) {
      setText(this.error, e.detail || String(e));
    }
  }

  async loadUsage() {
    const read = ++this.usageRead; // answers may come back out of order: only the last one asked is shown
    try {
      const usage = await api.get(`/api/v1/sandboxes/${encodeURIComponent(this.id)}/usage`);
      if (read === this.usageRead) this.usage.replaceChildren(...usageLine(usage));
    } catch (e) {
      if (read === this.usageRead) this.usage.replaceChildren(h("span", { class: "form-error" }, e.detail || String(e)));
    }
  }

  /** An event of the page's stream: `action` events of egress tools, and `egress` events. */
  push(event) {
    const d = event.data || {};
    if (d.action_id === undefined || d.action_id === null) return;
    if (event.kind === "action") {
      if (!TOOLS.has(d.tool)) return;
      this.put(fromEvent(event));
    } else if (event.kind === "egress") {
      const { action_id: id, ...result } = d;
      const call = this.calls.get(id);
      if (call) {
        call.result = result;
        this.dirty.add(id);
      } else {
        this.early.set(id, result);
        if (this.early.size > EARLY_KEPT) this.early.delete(this.early.keys().next().value);
      }
    } else return;
    this.usageSoon();
    this.drawSoon();
  }

  put(call) {
    const merged = merge(this.calls.get(call.id), call);
    if (!merged.result && this.early.has(call.id)) merged.result = this.early.get(call.id);
    this.early.delete(call.id);
    this.calls.set(call.id, merged);
    this.dirty.add(call.id);
  }

  usageSoon() {
    if (!this.usageTimer) {
      this.usageTimer = setTimeout(() => {
        this.usageTimer = 0;
        this.loadUsage();
      }, USAGE_AFTER_MS);
    }
  }

  drawSoon() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  /** Rebuild only the rows that changed; put them in order only when the order changed. */
  draw() {
    this.frame = 0;
    const order = [...this.calls.keys()].sort((a, b) => b - a);
    for (const id of order.slice(SHOWN)) {
      this.calls.delete(id);
      this.rows.delete(id);
    }
    const els = order.slice(0, SHOWN).map((id) => {
      let el = this.rows.get(id);
      if (!el || this.dirty.has(id)) {
        const next = row(this.calls.get(id));
        if (el) el.replaceWith(next);
        el = next;
        this.rows.set(id, el);
      }
      return el;
    });
    this.dirty.clear();
    const inOrder = els.length === this.body.children.length && els.every((el, i) => this.body.children[i] === el);
    if (!inOrder) this.body.replaceChildren(...els);
    this.table.hidden = els.length === 0;
    this.empty.hidden = els.length > 0 || !this.loaded;
    setText(this.count, els.length ? `${els.length === SHOWN ? "last " : ""}${els.length} call${els.length === 1 ? "" : "s"}` : "");
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    clearTimeout(this.usageTimer);
  }
}
