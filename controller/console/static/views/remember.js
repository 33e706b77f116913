// Before an approval is remembered as a grant, show what the grant would match (and would have matched).

import { approvals } from "../api.js";
import { compact, dialog, fmtTime, h } from "../ui.js";

const SCOPES = { sandbox: "this sandbox", template: "every sandbox of its template", fleet: "the whole fleet" };

/** "env = "staging", version = 3" for an exact-arguments match; the raw JSON for anything else. */
export function describeMatch(match) {
  const args = match && match.args;
  if (!args || typeof args !== "object") return compact(match, 200);
  const parts = Object.entries(args).map(([key, rule]) => {
    const values = rule && Array.isArray(rule.in) ? rule.in : null;
    if (!values) return `${key} ${compact(rule, 80)}`;
    return values.length === 1 ? `${key} = ${compact(values[0], 80)}` : `${key} in ${compact(values, 80)}`;
  });
  return parts.length ? parts.join(", ") : "any arguments";
}

/** Fetch the preview for `scope`, show it, and resolve true when the person confirms. */
export async function confirmRemember(item, scope) {
  const preview = await approvals.preview(item.id, scope);
  const past = preview.actions.slice(0, 10);
  const body = h("div", { class: "remember-preview" },
    h("p", {}, "From now on, ", h("strong", { class: "mono" }, preview.tool), " calls with ",
      h("code", {}, describeMatch(preview.match)), ` in ${SCOPES[preview.scope] || preview.scope} are allowed without asking.`),
    h("p", { class: "preview-count" }, h("strong", {}, String(preview.matched)),
      ` past action${preview.matched === 1 ? "" : "s"} would have matched this grant.`),
    past.length ? h("table", { class: "table mini" },
      h("thead", {}, h("tr", {}, ["Action", "Sandbox", "Arguments", "Status", "When"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, past.map((a) => h("tr", {},
        h("td", { class: "mono" }, `#${a.id}`), h("td", { class: "mono" }, a.sandbox_id),
        h("td", { class: "mono" }, compact(a.args, 60)), h("td", {}, a.status), h("td", {}, fmtTime(a.created_at))))))
      : null,
    preview.matched > past.length && past.length ? h("p", { class: "muted" }, `and ${preview.matched - past.length} more.`) : null,
    h("p", { class: "muted" }, "Grants are listed and can be revoked by an admin."));
  const answer = await dialog({
    title: `Remember this approval for ${SCOPES[scope] || scope}?`,
    body,
    wide: true,
    buttons: [
      { value: "cancel", label: "Cancel", class: "btn-ghost", autofocus: true },
      { value: "ok", label: "Approve and remember", class: "btn-primary" },
    ],
  });
  return answer === "ok";
}
