// The audit log: search it, see whether its hash chain verifies, and review actions after the fact.

import { api } from "../api.js";
import { badge, busy, compact, dialog, emptyState, fmtTime, h, pretty, toast } from "../ui.js";

const PAGE = 100;

function verifyBanner(result) {
  if (result.ok) {
    return h("div", { class: "verify verify-ok", role: "status" },
      h("strong", {}, "Chain verified"),
      h("span", {}, ` · ${result.checked} entr${result.checked === 1 ? "y" : "ies"} checked · head `),
      h("code", { title: `${result.head_id}:${result.head}` }, `${result.head_id}:${(result.head || "").slice(0, 16)}`));
  }
  return h("div", { class: "verify verify-bad", role: "alert" },
    h("strong", {}, "Chain broken"),
    h("span", {}, ` · ${result.problems.length} problem${result.problems.length === 1 ? "" : "s"} in ${result.checked} entries`),
    h("ul", {}, result.problems.slice(0, 20).map((p) => h("li", {}, h("span", { class: "mono" }, `#${p.id}`), ` ${p.problem}`))));
}

async function askReview(actionId, kind) {
  const note = h("textarea", { id: "review-note", rows: "3", placeholder: kind === "flagged" ? "What is wrong" : "Optional" });
  const answer = await dialog({
    title: kind === "flagged" ? `Flag action #${actionId}` : `Mark action #${actionId} reviewed`,
    body: h("div", {}, h("label", { for: "review-note", class: "field-label" }, "Note"), note),
    buttons: [
      { value: "cancel", label: "Cancel", class: "btn-ghost" },
      { value: "ok", label: kind === "flagged" ? "Flag" : "Mark reviewed", class: kind === "flagged" ? "btn-danger" : "btn-primary" },
    ],
  });
  if (answer !== "ok") return null;
  return { review: kind, ...(note.value.trim() ? { note: note.value.trim() } : {}) };
}

export function mount(root) {
  let next = null;
  let query = "";
  let debounce = 0;
  const reviews = new Map();
  const verify = h("div", { class: "verify verify-wait" }, "Verifying the chain…");
  const search = h("input", { id: "audit-q", type: "search", placeholder: "actor, event or subject…", autocomplete: "off" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "btn", hidden: true, on: { click: () => load(true) } }, "Load older entries");
  const empty = h("div", { hidden: true }, emptyState("No entries", "Nothing in the log matches."));

  root.append(h("section", { class: "page", "aria-labelledby": "audit-title" },
    h("div", { class: "page-head" },
      h("div", {}, h("h1", { id: "audit-title" }, "Audit log"),
        h("p", { class: "page-sub" }, "Append-only and hash-chained: every action, decision, approval and admin change.")),
      h("div", { class: "head-tools" },
        h("button", { type: "button", class: "btn btn-sm", on: { click: runVerify } }, "Verify again"),
        h("a", { class: "btn btn-sm btn-ghost", href: "/api/v1/audit/export", download: "audit.jsonl" }, "Export JSON lines"))),
    verify,
    h("form", { class: "toolbar", role: "search", on: { submit: (e) => { e.preventDefault(); apply(); } } },
      h("label", { for: "audit-q", class: "inline-label" }, "Search"), search),
    h("div", { class: "table-wrap" }, h("table", { class: "table rt audit-table" },
      h("thead", {}, h("tr", {}, ["#", "Time", "Actor", "Event", "Subject", "Details", "Review"]
        .map((t) => h("th", { scope: "col" }, t)))), tbody)),
    empty,
    h("div", { class: "more" }, more)));

  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(apply, 250);
  });

  function apply() {
    query = search.value.trim();
    load(false);
  }

  async function runVerify() {
    try {
      const result = await api.get("/api/v1/audit/verify");
      verify.replaceChildren(verifyBanner(result));
      verify.className = "verify-holder";
    } catch (e) {
      verify.className = "verify-holder";
      verify.replaceChildren(h("div", { class: "verify verify-bad", role: "alert" }, `Could not verify: ${e.detail || e}`));
    }
  }

  function reviewCell(entry) {
    const match = /^action:(\d+)$/.exec(entry.subject || "");
    if (!match) return h("td", { dataset: { label: "Review" }, class: "muted" }, "");
    const id = Number(match[1]);
    const state = h("span", { class: "review-state" });
    const cell = h("td", { dataset: { label: "Review" } }, h("div", { class: "review-cell" }, state,
      h("button", { type: "button", class: "btn btn-xs", "aria-label": `Mark action ${id} reviewed`,
        on: { click: (e) => review(id, "reviewed", e.currentTarget) } }, "Reviewed"),
      h("button", { type: "button", class: "btn btn-xs btn-danger-ghost", "aria-label": `Flag action ${id}`,
        on: { click: (e) => review(id, "flagged", e.currentTarget) } }, "Flag…")));
    cell.dataset.action = id;
    showReview(cell, reviews.get(id));
    return cell;
  }

  function showReview(cell, action) {
    const state = cell.querySelector(".review-state");
    if (action && action.review) {
      state.replaceChildren(badge(action.review === "flagged" ? "denied" : "allowed", action.review));
      state.title = `${action.review} by ${action.reviewed_by}${action.review_note ? `: ${action.review_note}` : ""}`;
    } else state.replaceChildren();
  }

  async function review(id, kind, button) {
    const body = await askReview(id, kind);
    if (!body) return;
    const action = await busy(button, () => api.post(`/api/v1/actions/${id}/review`, body));
    if (!action) return;
    reviews.set(id, action);
    toast(`Action #${id} ${kind}`, "ok");
    for (const cell of tbody.querySelectorAll(`td[data-action="${id}"]`)) showReview(cell, action);
  }

  function row(entry) {
    return h("tr", {},
      h("td", { dataset: { label: "#" }, class: "mono num" }, entry.id),
      h("td", { dataset: { label: "Time" } }, h("time", { datetime: entry.created_at }, fmtTime(entry.created_at))),
      h("td", { dataset: { label: "Actor" }, class: "mono" }, entry.actor),
      h("td", { dataset: { label: "Event" } }, h("span", { class: "event-tag" }, entry.event)),
      h("td", { dataset: { label: "Subject" }, class: "mono" }, subjectLink(entry.subject)),
      h("td", { dataset: { label: "Details" }, class: "details" }, h("details", {},
        h("summary", { class: "mono" }, compact(entry.data, 110)), h("pre", { class: "code" }, pretty(entry.data)))),
      reviewCell(entry));
  }

  function subjectLink(subject) {
    const sandbox = /^sandbox:(sb_\w+)$/.exec(subject || "");
    return sandbox ? h("a", { href: `#/sandbox/${sandbox[1]}` }, subject) : subject || "—";
  }

  async function loadReviews() {
    try {
      const page = await api.get("/api/v1/actions", { limit: 1000 });
      for (const action of page.items) reviews.set(action.id, action);
      for (const cell of tbody.querySelectorAll("td[data-action]")) showReview(cell, reviews.get(Number(cell.dataset.action)));
    } catch (e) {
      console.warn("could not load review marks", e);
    }
  }

  async function load(older) {
    try {
      const page = await api.get("/api/v1/audit", { q: query || undefined, limit: PAGE, before: older ? next : undefined });
      next = page.next;
      const rows = page.items.map(row);
      if (older) tbody.append(...rows);
      else tbody.replaceChildren(...rows);
      more.hidden = !next;
      empty.hidden = tbody.childElementCount > 0;
    } catch (e) {
      toast(`Could not load the audit log: ${e.detail || e}`, "bad");
    }
  }

  runVerify();
  load(false).then(loadReviews);
  return () => clearTimeout(debounce);
}
