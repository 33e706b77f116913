// One pending action in the inbox: what the agent wants, why the policy asked, who voted, what the agent was
// doing, and the decisions (approve, edit then approve, deny with a message, approve and remember).

import { approvals, sandboxes } from "../api.js";
import { can, pending } from "../store.js";
import { badge, busy, fmtAgo, fmtTime, h, kbd, pretty, setText, toast } from "../ui.js";
import { confirmRemember } from "./remember.js";
import { countdown } from "./deadline.js";
import { Terminal } from "./terminal.js";

/** Parse edited arguments; returns [object, null] or [null, message]. */
export function parseArgs(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return [null, `Not valid JSON: ${e.message}`];
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return [null, "The arguments must be a JSON object, like {\"key\": \"value\"}."];
  }
  return [value, null];
}

function votesView(item) {
  const approvals = item.votes.filter((v) => v.decision === "approve").length;
  const who = item.approvers && item.approvers.length ? ` · from ${item.approvers.join(", ")}` : "";
  return h("div", { class: "votes" },
    h("p", { class: "votes-count" }, h("strong", {}, `${approvals} of ${item.quorum}`),
      ` approval${item.quorum === 1 ? "" : "s"} needed${who}`),
    item.votes.length ? h("ul", { class: "vote-list" }, item.votes.map((v) => h("li", {},
      badge(v.decision === "approve" ? "approved" : "denied", v.decision), " ", h("strong", {}, v.user),
      h("span", { class: "muted" }, ` via ${v.via}, ${fmtAgo(v.created_at)}`),
      v.message ? h("span", {}, ` — “${v.message}”`) : null))) : null);
}

export class ApprovalDetail {
  constructor(item) {
    this.item = item;
    this.editing = false;
    const action = item.action || { tool: item.data.tool, args: item.data.args || {}, reason: item.data.reason };
    this.args = action.args || {};
    const id = item.id;
    this.deadline = h("span", { class: "deadline" });
    this.votes = h("div", {}, votesView(item));
    this.argsView = h("pre", { class: "code args", tabindex: "0", "aria-label": "Arguments" }, pretty(this.args));
    this.argsEdit = h("textarea", {
      id: `args-${id}`, class: "code-input", rows: "8", spellcheck: "false", hidden: true,
      "aria-describedby": `args-err-${id}`,
    });
    this.argsLabel = h("label", { for: `args-${id}`, class: "sr-only" }, "Edited arguments (JSON)");
    this.argsError = h("p", { id: `args-err-${id}`, class: "form-error", role: "alert" });
    this.editButton = h("button", { type: "button", class: "btn btn-sm", "aria-keyshortcuts": "e",
      on: { click: () => this.toggleEdit() } }, h("span", { class: "label" }, "Edit arguments"), kbd("e"));
    this.approveButton = h("button", { type: "button", class: "btn btn-primary", "aria-keyshortcuts": "a",
      on: { click: () => this.approve() } }, h("span", { class: "label" }, "Approve"), kbd("a"));
    this.message = h("textarea", {
      id: `deny-${id}`, class: "deny-message", rows: "1", placeholder: "Why not, and what to do instead (optional)",
    });
    this.denyButton = h("button", { type: "button", class: "btn btn-danger", "aria-keyshortcuts": "d",
      on: { click: () => this.deny() } }, "Deny", kbd("d"));
    this.scope = h("select", { id: `scope-${id}` },
      h("option", { value: "sandbox" }, "this sandbox"),
      h("option", { value: "template", disabled: !can("operator") }, "its template"),
      h("option", { value: "fleet", disabled: !can("admin") }, "the whole fleet"));
    this.rememberButton = h("button", { type: "button", class: "btn", "aria-keyshortcuts": "r",
      on: { click: () => this.remember() } }, "Approve and remember…", kbd("r"));
    this.context = new Terminal({ label: `Recent output of ${item.sandbox_id}`, maxLines: 40, compact: true });
    this.context.setEmptyText("Loading the agent's recent output…");
    this.el = this.render(action);
    this.tick();
    this.loadContext();
  }

  render(action) {
    const item = this.item;
    const decider = can("approver");
    return h("article", { class: "detail", "aria-labelledby": `detail-title-${item.id}`, dataset: { id: item.id } },
      h("header", { class: "detail-head" },
        h("div", { class: "title-row" },
          h("h2", { id: `detail-title-${item.id}`, class: "mono tool-title" }, action.tool),
          badge(item.risk, `${item.risk} risk`)),
        h("p", { class: "muted" }, `#${item.id} · `, h("a", { class: "mono", href: `#/sandbox/${item.sandbox_id}` },
          item.sandbox_id), ` · asked ${fmtAgo(item.created_at)} (${fmtTime(item.created_at)}) · `, this.deadline)),
      h("div", { class: "facts" },
        h("section", { class: "block" }, h("h3", {}, "Why it asks"),
          h("p", { class: "reason" }, action.reason || item.data.reason || "The policy asks a person for this action.")),
        h("section", { class: "block" }, h("h3", {}, "Votes"), this.votes)),
      h("section", { class: "block" },
        h("div", { class: "block-head" }, h("h3", {}, "Arguments"), decider ? this.editButton : null),
        this.argsView, this.argsLabel, this.argsEdit, this.argsError),
      h("section", { class: "block" }, h("h3", {}, "Recent output"), this.context.el),
      decider ? this.controls() : h("p", { class: "muted block" }, "Viewers can read the queue; approvers decide."));
  }

  controls() {
    const id = this.item.id;
    return h("section", { class: "block decide", "aria-label": "Decision" },
      h("div", { class: "decide-row" }, this.approveButton,
        this.item.rememberable ? h("div", { class: "remember-box" },
          h("label", { for: `scope-${id}`, class: "inline-label" }, "Remember for"), this.scope, this.rememberButton)
          : null),
      h("div", { class: "deny-box" },
        h("label", { for: `deny-${id}`, class: "field-label" }, "Deny with a message to the agent"),
        h("div", { class: "deny-row" }, this.message, this.denyButton)));
  }

  async loadContext() {
    try {
      const page = await sandboxes.logs(this.item.sandbox_id, 20);
      this.context.setEmptyText("The agent has printed nothing yet.");
      for (const line of page.items) this.context.push(line.stream, line.line, line.ts);
    } catch (e) {
      this.context.setEmptyText(`Could not load the output: ${e.detail || e}`);
    }
  }

  tick() {
    const { text, urgent } = countdown(this.item);
    setText(this.deadline, text);
    this.deadline.classList.toggle("urgent", urgent);
  }

  update(item) {
    this.item = item;
    this.votes.replaceChildren(votesView(item));
  }

  toggleEdit(force) {
    this.editing = force === undefined ? !this.editing : force;
    this.argsView.hidden = this.editing;
    this.argsEdit.hidden = !this.editing;
    setText(this.editButton.querySelector(".label"), this.editing ? "Cancel edit" : "Edit arguments");
    setText(this.approveButton.querySelector(".label"), this.editing ? "Approve with edits" : "Approve");
    if (this.editing) {
      this.argsEdit.value = pretty(this.args);
      this.argsEdit.focus();
    } else {
      this.argsError.textContent = "";
      this.argsEdit.removeAttribute("aria-invalid");
    }
  }

  /** The edited arguments when editing (null when invalid), else undefined. */
  editedArgs() {
    if (!this.editing) return undefined;
    const [value, error] = parseArgs(this.argsEdit.value);
    this.argsError.textContent = error || "";
    if (error) {
      this.argsEdit.setAttribute("aria-invalid", "true");
      this.argsEdit.focus();
      return null;
    }
    this.argsEdit.removeAttribute("aria-invalid");
    return value;
  }

  async send(button, body, verb) {
    if (this.sending) return false;  // a key pressed twice must not send twice
    this.sending = true;
    const result = await busy(button, () => approvals.decide(this.item.id, body));
    this.sending = false;
    if (!result) return false;
    if (result.settled) {
      toast(`${verb} #${this.item.id} (${this.item.action ? this.item.action.tool : this.item.kind})`, "ok");
      pending.forget(this.item.id);
    } else {
      toast(`Your vote on #${this.item.id} is in; it needs more approvals.`, "info");
      this.update(result.approval);
    }
    pending.refreshSoon();
    return true;
  }

  approve() {
    const args = this.editedArgs();
    if (args === null) return;
    const body = { decision: "approve" };
    if (args !== undefined) body.args = args;
    this.send(this.approveButton, body, args !== undefined ? "Approved with edits" : "Approved");
  }

  focusDeny() {
    this.message.focus();
  }

  deny() {
    const message = this.message.value.trim();
    this.send(this.denyButton, { decision: "deny", ...(message ? { message } : {}) }, "Denied");
  }

  async remember() {
    if (!this.item.rememberable) {
      toast("This rule does not allow remembering its approvals.", "warn");
      return;
    }
    const args = this.editedArgs();
    if (args === null) return;
    const scope = this.scope.value;
    const ok = await busy(this.rememberButton, () => confirmRemember(this.item, scope));
    if (!ok) return;
    const body = { decision: "approve", remember: scope, ...(args !== undefined ? { args } : {}) };
    this.send(this.rememberButton, body, `Approved and remembered for ${this.scope.selectedOptions[0].text}:`);
  }
}
