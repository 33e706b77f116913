// One sandbox's row in the fleet table. It keeps references to its cells and only touches what changed,
// so fifty sandboxes streaming resource samples cost a few text updates per frame.

import { can } from "../store.js";
import { badge, fmtAgo, fmtBytes, h, setText, updateBadge } from "../ui.js";

const LIVE = new Set(["creating", "running", "paused"]);

export function agentLabel(sandbox) {
  if (sandbox.template) return sandbox.template;
  if (sandbox.command && sandbox.command.length) return sandbox.command.join(" ");
  return sandbox.image;
}

/** Text the fleet search looks through. */
export function searchText(model) {
  const s = model.sandbox;
  return [s.id, s.image, s.template, (s.command || []).join(" "), s.status, s.host, model.action && actionLabel(model.action)]
    .filter(Boolean).join(" ").toLowerCase();
}

function cell(label, ...children) {
  return h("td", { dataset: { label } }, ...children);
}

/** What an action does, in one line: a shell command as typed, other tools with their first arguments. */
export function actionLabel(action) {
  const args = action.args || {};
  const command = Array.isArray(args.command) ? args.command.join(" ") : args.command;
  if (action.tool === "shell" && typeof command === "string") return `$ ${command}`;
  const shown = Object.entries(args).slice(0, 2)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  return [action.tool, ...shown].join(" ");
}

export class FleetRow {
  constructor(model, { onStop, onRemove }) {
    const id = model.sandbox.id;
    this.status = badge(model.sandbox.status);
    this.statusNote = h("div", { class: "sub" });
    this.agent = h("div", { class: "agent-name" });
    this.agentState = h("div", { class: "sub" });
    this.actionTool = h("span", { class: "mono action-what" });
    this.actionState = h("span", { class: "action-state" });
    this.pendingLink = h("a", { class: "pending-link", href: "#/approvals" });
    this.cpuFill = h("span", { class: "meter-fill" });
    this.cpuText = h("span", { class: "num" });
    this.memText = h("span", { class: "num" });
    this.age = h("span", { class: "num" });
    this.stop = h("button", {
      type: "button", class: "btn btn-sm", "aria-label": `Stop ${id}`, on: { click: () => onStop(id, this.stop) },
    }, "Stop");
    this.remove = h("button", {
      type: "button", class: "btn btn-sm btn-danger-ghost", "aria-label": `Remove ${id}`,
      on: { click: () => onRemove(id, this.remove) },
    }, "Remove");
    const controls = can("operator") ? [this.stop, this.remove] : [h("span", { class: "muted" }, "—")];
    this.el = h("tr", { dataset: { id } },
      cell("Sandbox", h("a", { class: "sb-link mono", href: `#/sandbox/${id}` }, id),
        h("div", { class: "sub mono" }, model.sandbox.image)),
      cell("Status", this.status, this.statusNote),
      cell("Agent", this.agent, this.agentState),
      cell("Current action", h("div", { class: "action-cell" }, this.actionTool, this.actionState)),
      cell("Pending", this.pendingLink),
      cell("CPU", h("div", { class: "cpu" }, h("span", { class: "meter", "aria-hidden": "true" }, this.cpuFill),
        this.cpuText)),
      cell("Memory", this.memText),
      cell("Age", this.age),
      h("td", { class: "c-actions", dataset: { label: "Controls" } }, h("div", { class: "row-actions" }, controls)));
    this.update(model);
  }

  update(model) {
    const s = model.sandbox;
    updateBadge(this.status, s.status);
    let note = "";
    if (s.status === "exited" && s.exit_code !== null && s.exit_code !== undefined) note = `exit ${s.exit_code}`;
    else if (s.error) note = s.error;
    setText(this.statusNote, note);
    this.statusNote.title = note;
    setText(this.agent, agentLabel(s));
    this.agent.title = agentLabel(s);
    setText(this.agentState, model.agent ? `agent ${model.agent}` : "");
    this.updateAction(model.action);
    const count = model.pending || 0;
    setText(this.pendingLink, count ? `${count} waiting` : "—");
    this.pendingLink.classList.toggle("has-pending", count > 0);
    this.pendingLink.setAttribute("aria-label", `${count} pending approvals for ${s.id}`);
    this.updateResources(LIVE.has(s.status) ? model.res : null, s);
    setText(this.age, fmtAgo(s.created_at).replace(" ago", ""));
    this.stop.disabled = !LIVE.has(s.status);
  }

  updateAction(action) {
    setText(this.actionTool, action ? actionLabel(action) : "—");
    this.actionTool.classList.toggle("muted", !action);
    if (!action) {
      setText(this.actionState, "");
      this.actionState.className = "action-state";
      return;
    }
    const by = action.decided_by && action.status !== "pending" ? ` · ${action.decided_by}` : "";
    setText(this.actionState, `${action.status}${by}`);
    this.actionState.className = `action-state st-${action.status}`;
    this.actionTool.title = [actionLabel(action), action.reason].filter(Boolean).join("\n");
  }

  updateResources(res, sandbox) {
    if (!res) {
      this.cpuFill.style.width = "0";
      setText(this.cpuText, "—");
      setText(this.memText, "—");
      return;
    }
    const pct = typeof res.cpu_pct === "number" ? res.cpu_pct : null;
    const scale = (sandbox.resources && sandbox.resources.cpus) || 1;
    this.cpuFill.style.width = pct === null ? "0" : `${Math.min(100, pct / scale)}%`;
    this.cpuFill.classList.toggle("hot", pct !== null && pct / scale > 85);
    setText(this.cpuText, pct === null ? "—" : `${pct.toFixed(1)}%`);
    const limit = res.mem_limit || (sandbox.resources && sandbox.resources.memory_mb * 1048576) || null;
    setText(this.memText, limit ? `${fmtBytes(res.mem_bytes)} / ${fmtBytes(limit)}` : fmtBytes(res.mem_bytes));
  }
}
