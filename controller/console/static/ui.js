// Small DOM and formatting helpers shared by the views. Text always goes in through textContent, never HTML.

/** Create an element: h("a", {href, class, on: {click}}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "on") for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") el.style.cssText = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Set textContent only when it changed (cheap live updates). */
export function setText(el, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function parseTime(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value * 1000);
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function fmtTime(value) {
  const date = parseTime(value);
  if (!date) return "—";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })
    : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function fmtAgo(value) {
  const date = parseTime(value);
  if (!date) return "—";
  const seconds = (Date.now() - date.getTime()) / 1000;
  if (seconds < 5) return "just now";
  const text = fmtDuration(seconds).split(" ")[0];
  return `${text} ago`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function pretty(value) {
  return JSON.stringify(value ?? null, null, 2);
}

export function compact(value, max = 120) {
  const text = JSON.stringify(value ?? null);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const STATUS_TONE = {
  creating: "info", running: "ok", paused: "warn", exited: "muted", stopped: "muted",
  gone: "bad", failed: "bad", removed: "muted",
  pending: "warn", allowed: "ok", approved: "ok", denied: "bad", expired: "muted", cancelled: "muted",
  low: "muted", medium: "info", high: "warn", critical: "bad",
};

/** A status chip with a coloured dot; tone comes from the status name. */
export function badge(status, label) {
  const tone = STATUS_TONE[status] || "muted";
  return h("span", { class: `badge tone-${tone}`, dataset: { status: status || "" } },
    h("span", { class: "dot", "aria-hidden": "true" }), label || status || "—");
}

export function updateBadge(el, status, label) {
  const tone = STATUS_TONE[status] || "muted";
  const cls = `badge tone-${tone}`;
  if (el.className !== cls) el.className = cls;
  el.dataset.status = status || "";
  setText(el.lastChild, label || status || "—");
}

export function toast(message, tone = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast tone-${tone}` }, message);
  box.append(item);
  setTimeout(() => item.classList.add("leaving"), tone === "bad" ? 7000 : 4000);
  setTimeout(() => item.remove(), tone === "bad" ? 7400 : 4400);
}

/** A modal dialog; resolves with the value of the button pressed (or null when dismissed). */
export function dialog({ title, body, buttons, wide = false }) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog", class: "dialog-form" });
    const el = h("dialog", { class: `dialog${wide ? " dialog-wide" : ""}`, "aria-labelledby": "dlg-title" },
      form);
    form.append(h("h2", { id: "dlg-title", class: "dialog-title" }, title), h("div", { class: "dialog-body" }, body),
      h("div", { class: "dialog-actions" }, buttons.map((b) =>
        h("button", { type: "submit", value: b.value, class: `btn ${b.class || ""}`, autofocus: b.autofocus }, b.label))));
    el.addEventListener("close", () => {
      el.remove();
      resolve(el.returnValue && el.returnValue !== "cancel" ? el.returnValue : null);
    });
    document.body.append(el);
    el.showModal();
  });
}

export async function confirmAction({ title, message, confirm, danger = true }) {
  const answer = await dialog({
    title,
    body: h("p", {}, message),
    buttons: [
      { value: "cancel", label: "Cancel", class: "btn-ghost", autofocus: true },
      { value: "ok", label: confirm, class: danger ? "btn-danger" : "btn-primary" },
    ],
  });
  return answer === "ok";
}

/** Run an async action from a button: disable it meanwhile, report failures as a toast. */
export async function busy(button, work) {
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (e) {
    toast(e.detail || e.message || String(e), "bad");
    return undefined;
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

export function emptyState(title, text) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title), text ? h("p", {}, text) : null);
}

/** The fleetgate mark (a constant SVG, so markup here is safe). */
export function brandMark() {
  const holder = document.createElement("span");
  holder.innerHTML = '<svg class="brand-mark" viewBox="0 0 24 24" aria-hidden="true">'
    + '<path d="M4 5h16v4H4zM4 11h10v4H4zM4 17h6v3H4z"/></svg>';
  return holder.firstChild;
}

/** A key hint inside a button: shown, but left out of the button's accessible name (aria-keyshortcuts says it). */
export function kbd(key) {
  return h("kbd", { "aria-hidden": "true" }, key);
}
