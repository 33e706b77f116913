// A sandbox's gated actions, newest first, each with its decision and what decided it.

import { badge, compact, emptyState, fmtTime, h, pretty } from "../ui.js";

const BY_LABEL = { policy: "policy", grant: "a remembered grant", person: "a person", timeout: "the deadline" };

/** One sentence on what decided an action: the layer, rule and line of the policy, the grant, the people. */
export function decidedBy(action) {
  const d = action.decision || {};
  const v = action.verdict || {};
  if (action.status === "pending") {
    return h("span", {}, h("strong", {}, "Waiting for a person"), " · ", rule({ ...v, ...d }),
      action.approval_id ? [" · ", h("a", { href: `#/approvals/${action.approval_id}` }, "decide in the inbox")] : null);
  }
  const parts = [h("span", {}, "Decided by ", h("strong", {}, BY_LABEL[action.decided_by] || action.decided_by || "—"))];
  if (action.decided_by === "person" && d.people && d.people.length) {
    parts.push(h("span", {}, ` (${d.people.join(", ")})`));
  }
  if (action.decided_by === "timeout") parts.push(h("span", {}, ` (no one answered; on timeout: ${d.on_timeout || "deny"})`));
  if (action.decided_by === "grant" && d.grant_id) parts.push(h("span", {}, ` #${d.grant_id}`));
  const source = { ...v, ...d };
  if (source.layer) parts.push(h("span", {}, action.decided_by === "policy" ? " · " : " · asked by "), rule(source));
  return h("span", {}, parts);
}

function rule(d) {
  if (!d || !d.layer) return h("span", {}, "the policy");
  const where = [];
  if (d.rule !== null && d.rule !== undefined) {
    where.push(`rule ${Number(d.rule) + 1}${d.rule_name ? ` “${d.rule_name}”` : ""}`);
  }
  else where.push("default");
  if (d.line) where.push(`line ${d.line}`);
  return h("span", { class: "rule-ref" }, `${d.layer} policy, ${where.join(", ")}`);
}

function reviewNote(action) {
  if (!action.review) return null;
  const text = action.review === "flagged" ? "Flagged" : "Reviewed";
  return h("p", { class: `tl-review review-${action.review}` }, `${text} by ${action.reviewed_by || "—"}`,
    action.review_note ? `: ${action.review_note}` : "");
}

function item(action) {
  const edited = action.final_args && JSON.stringify(action.final_args) !== JSON.stringify(action.args);
  const reason = (action.decision && action.decision.reason) || (action.verdict && action.verdict.reason);
  return h("li", { class: `tl-item st-${action.status}`, dataset: { actionId: action.id } },
    h("div", { class: "tl-head" },
      h("span", { class: "mono tool" }, action.tool),
      badge(action.status),
      action.risk && action.risk !== "low" ? badge(action.risk, `${action.risk} risk`) : null,
      h("time", { class: "muted tl-time", datetime: action.created_at }, fmtTime(action.created_at))),
    h("details", { class: "tl-args" },
      h("summary", {}, h("span", { class: "mono" }, compact(action.args, 90))),
      h("pre", { class: "code" }, pretty(action.args))),
    h("p", { class: "tl-why" }, decidedBy(action)),
    reason ? h("p", { class: "tl-reason muted" }, reason) : null,
    edited ? h("p", { class: "tl-edit" }, h("span", { class: "muted" }, "Approved with edited arguments: "),
      h("span", { class: "mono" }, compact(action.final_args, 160))) : null,
    action.status === "denied" && action.message
      ? h("p", { class: "tl-message" }, h("span", { class: "muted" }, "Message to the agent: "), action.message)
      : null,
    reviewNote(action));
}

export function renderTimeline(list, actions) {
  if (!actions.length) {
    list.replaceChildren(h("li", {}, emptyState("No actions yet",
      "Every call the agent makes through the gate appears here with its decision.")));
    return;
  }
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.closest("li").dataset.actionId));
  list.replaceChildren(...actions.map((action) => {
    const el = item(action);
    if (open.has(String(action.id))) el.querySelector("details").open = true;
    return el;
  }));
}
