// Checkpoints and escalations: an agent that finished a stage waits for feedback (continue / stop); an agent that
// handed off waits for a person to take it (take, then resume with a message / stop).

import { approvals, sandboxes } from "../api.js";
import { can, pending, session } from "../store.js";
import { badge, busy, confirmAction, emptyState, fmtAgo, fmtTime, h, pretty, setText, toast } from "../ui.js";
import { countdown } from "./deadline.js";
import { Terminal } from "./terminal.js";

const KIND_LABEL = { checkpoint: "Checkpoint", escalation: "Escalation" };
const SETTLED = ["approved", "denied", "expired", "cancelled"];

function card(item, refresh) {
  const id = item.id;
  const message = h("textarea", { id: `msg-${id}`, rows: "2",
    placeholder: item.kind === "checkpoint" ? "Feedback for the next stage (optional)" : "What the agent should do now" });
  const label = item.kind === "checkpoint" ? "Feedback to the agent" : "Message to the agent";
  const due = h("span", { class: item.deadline ? "deadline" : "deadline muted" }, countdown(item).text);
  const mine = item.assignee && session.user && item.assignee === session.user.name;

  async function decide(button, decision, verb) {
    if (decision === "deny") {
      const ok = await confirmAction({ title: `Stop ${item.sandbox_id}?`,
        message: "The agent is stopped and its sandbox with it. The message is recorded.", confirm: "Stop the agent" });
      if (!ok) return;
    }
    const text = message.value.trim();
    const result = await busy(button, () => approvals.decide(id, { decision, ...(text ? { message: text } : {}) }));
    if (!result) return;
    toast(result.settled ? `${verb} (${KIND_LABEL[item.kind].toLowerCase()} #${id})` : "Your vote is in.", "ok");
    if (result.settled) pending.forget(id);
    refresh();
  }

  const controls = [];
  if (can("approver")) {
    if (item.kind === "checkpoint") {
      const go = h("button", { type: "button", class: "btn btn-primary" }, "Continue");
      const stop = h("button", { type: "button", class: "btn btn-danger-ghost" }, "Stop");
      go.addEventListener("click", () => decide(go, "approve", "Continued"));
      stop.addEventListener("click", () => decide(stop, "deny", "Stopped"));
      controls.push(go, stop);
    } else {
      const take = h("button", { type: "button", class: mine ? "btn" : "btn btn-primary", disabled: mine },
        mine ? "Taken by you" : item.assignee ? "Take over" : "Take it");
      const resume = h("button", { type: "button", class: mine ? "btn btn-primary" : "btn", disabled: !mine,
        title: mine ? "" : "Take it first" }, "Resume");
      const stop = h("button", { type: "button", class: "btn btn-danger-ghost" }, "Stop");
      take.addEventListener("click", async () => {
        if (await busy(take, () => approvals.take(id))) {
          toast(`You took escalation #${id}`, "ok");
          pending.refreshSoon();
        }
      });
      resume.addEventListener("click", () => decide(resume, "approve", "Resumed"));
      stop.addEventListener("click", () => decide(stop, "deny", "Stopped"));
      controls.push(take, resume, stop);
    }
  }

  return h("article", { class: `qcard kind-${item.kind}`, dataset: { id } },
    h("header", { class: "qcard-head" },
      h("span", { class: `kind-tag kind-${item.kind}` }, KIND_LABEL[item.kind] || item.kind),
      h("a", { class: "mono", href: `#/sandbox/${item.sandbox_id}` }, item.sandbox_id),
      h("span", { class: "muted" }, `#${id} · ${fmtAgo(item.created_at)}`), due),
    h("p", { class: "qcard-summary" }, item.summary),
    item.kind === "escalation" ? h("p", { class: "assignee" }, item.assignee
      ? h("span", {}, "Taken by ", h("strong", {}, item.assignee)) : h("span", { class: "tone-warn" }, "Nobody has taken it yet"))
      : null,
    Object.keys(item.data || {}).length ? h("details", { class: "qcard-data", open: item.kind === "checkpoint" },
      h("summary", {}, item.kind === "checkpoint" ? "What the agent reports" : "Details"),
      h("pre", { class: "code" }, pretty(item.data))) : null,
    recentOutput(item),
    can("approver") ? h("div", { class: "qcard-decide" },
      h("label", { for: `msg-${id}`, class: "field-label" }, label), message,
      h("div", { class: "decide-row" }, controls)) : null);
}

/** The agent's last lines, loaded when the reader opens them. */
function recentOutput(item) {
  const terminal = new Terminal({ label: `Recent output of ${item.sandbox_id}`, maxLines: 40, compact: true });
  terminal.setEmptyText("Loading…");
  const box = h("details", { class: "qcard-data" }, h("summary", {}, "Recent output"), terminal.el);
  box.addEventListener("toggle", async () => {
    if (!box.open || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    try {
      const page = await sandboxes.logs(item.sandbox_id, 20);
      terminal.setEmptyText("The agent has printed nothing yet.");
      for (const line of page.items) terminal.push(line.stream, line.line, line.ts);
    } catch (e) {
      terminal.setEmptyText(`Could not load the output: ${e.detail || e}`);
    }
  });
  return box;
}

function historyRow(item) {
  return h("tr", {},
    h("td", { dataset: { label: "When" } }, fmtTime(item.decided_at || item.created_at)),
    h("td", { dataset: { label: "Kind" } }, KIND_LABEL[item.kind] || item.kind),
    h("td", { dataset: { label: "Sandbox" }, class: "mono" }, h("a", { href: `#/sandbox/${item.sandbox_id}` }, item.sandbox_id)),
    h("td", { dataset: { label: "Summary" } }, item.summary),
    h("td", { dataset: { label: "Outcome" } }, badge(item.status)),
    h("td", { dataset: { label: "By" } }, (item.decided_by || []).join(", ") || "—"),
    h("td", { dataset: { label: "Message" } }, item.message || "—"));
}

export function mount(root) {
  const count = h("p", { class: "page-sub" }, "Loading…");
  const list = h("div", { class: "qlist" });
  const history = h("tbody");
  const drafts = new Map();
  let shown = "";

  root.append(h("section", { class: "page", "aria-labelledby": "queue-title" },
    h("div", { class: "page-head" }, h("div", {}, h("h1", { id: "queue-title" }, "Queue"), count)),
    list,
    h("section", { class: "panel", "aria-labelledby": "hist-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "hist-title" }, "Recently settled")),
      h("div", { class: "table-wrap" }, h("table", { class: "table rt" },
        h("thead", {}, h("tr", {}, ["When", "Kind", "Sandbox", "Summary", "Outcome", "By", "Message"]
          .map((t) => h("th", { scope: "col" }, t)))), history)))));

  async function loadHistory() {
    try {
      const pages = await Promise.all(SETTLED.flatMap((status) =>
        ["checkpoint", "escalation"].map((kind) => approvals.list({ status, kind, limit: 20 }))));
      const settled = pages.flatMap((p) => p.items)
        .sort((a, b) => String(b.decided_at || b.created_at).localeCompare(String(a.decided_at || a.created_at)))
        .slice(0, 20);
      history.replaceChildren(...(settled.length ? settled.map(historyRow)
        : [h("tr", {}, h("td", { colspan: "7", class: "muted" }, "Nothing settled yet."))]));
    } catch (e) {
      history.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "form-error" }, e.detail || String(e))));
    }
  }

  function render(queue) {
    const items = queue.items.filter((i) => i.kind !== "action");
    setText(count, items.length ? `${items.length} agent${items.length === 1 ? "" : "s"} waiting for a person` : "Nothing waiting");
    const key = JSON.stringify(items.map((i) => [i.id, i.assignee, i.votes.length]));
    if (key === shown) return;
    shown = key;
    for (const el of list.querySelectorAll("textarea")) drafts.set(el.id, el.value);
    list.replaceChildren(...(items.length ? items.map((item) => card(item, () => pending.refreshSoon()))
      : [emptyState("No checkpoints or escalations", "Agents that pause for review or hand off to a person appear here.")]));
    for (const el of list.querySelectorAll("textarea")) if (drafts.has(el.id)) el.value = drafts.get(el.id);
    loadHistory();
  }

  const unsubscribe = pending.subscribe(render);
  const timer = setInterval(() => {
    for (const el of list.querySelectorAll(".qcard")) {
      const item = pending.items.find((i) => String(i.id) === el.dataset.id);
      if (item) setText(el.querySelector(".deadline"), countdown(item).text);
    }
  }, 1000);
  if (!pending.loaded) pending.refresh();
  loadHistory();
  return () => {
    unsubscribe();
    clearInterval(timer);
  };
}
