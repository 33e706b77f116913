// The approval inbox: pending actions, newest first, live; a list to move through and the chosen item in full.
// Keyboard: j/k move, a approve, e edit, d deny (message box), r remember, ? help.

import { pending } from "../store.js";
import { badge, dialog, emptyState, fmtAgo, h, kbd, setText, toast } from "../ui.js";
import { ApprovalDetail } from "./approval-detail.js";
import { countdown } from "./deadline.js";

const SHORTCUTS = [
  ["j", "next item"], ["k", "previous item"], ["a", "approve (with your edits, when editing)"],
  ["e", "edit the arguments"], ["d", "deny: write the message to the agent"], ["r", "approve and remember…"],
  ["?", "this help"], ["Esc", "leave a text box"],
];

export function showHelp() {
  return dialog({
    title: "Keyboard shortcuts",
    body: h("dl", { class: "shortcuts" }, SHORTCUTS.flatMap(([key, what]) => [h("dt", {}, h("kbd", {}, key)), h("dd", {}, what)])),
    buttons: [{ value: "cancel", label: "Close", class: "btn-primary", autofocus: true }],
  });
}

function typing(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

export function mount(root, [wanted]) {
  let items = [];
  let selected = wanted ? Number(wanted) : null;
  let detail = null;
  const rows = new Map();

  const count = h("p", { class: "page-sub" }, "Loading…");
  const list = h("ul", { class: "inbox-list", "aria-label": "Pending approvals, newest first" });
  const pane = h("div", { class: "inbox-detail" });
  const others = h("a", { class: "muted small", href: "#/queue", hidden: true });

  root.append(h("section", { class: "page inbox-page", "aria-labelledby": "inbox-title" },
    h("div", { class: "page-head" },
      h("div", {}, h("h1", { id: "inbox-title" }, "Approvals"), count),
      h("div", { class: "head-tools" }, others,
        h("button", { type: "button", class: "btn btn-ghost btn-sm help-button", on: { click: showHelp } },
          "Shortcuts", kbd("?")))),
    h("div", { class: "inbox" }, h("nav", { class: "inbox-nav", "aria-label": "Queue" }, list), pane)));

  function row(item) {
    const tool = item.action ? item.action.tool : item.data.tool || item.kind;
    const due = h("span", { class: "due" });
    const votes = h("span", { class: "votes-mini" });
    const button = h("button", { type: "button", class: "inbox-item", dataset: { id: item.id },
      on: { click: () => select(item.id, true) } },
    h("span", { class: "item-top" }, h("span", { class: "mono tool" }, tool), badge(item.risk)),
    h("span", { class: "item-sub mono" }, item.sandbox_id),
    h("span", { class: "item-meta" }, h("span", {}, fmtAgo(item.created_at)), due, votes));
    return { el: h("li", {}, button), button, due, votes, item };
  }

  function showVotes(r) {
    const yes = r.item.votes.filter((v) => v.decision === "approve").length;
    setText(r.votes, r.item.quorum > 1 ? `${yes}/${r.item.quorum} votes` : "");
  }

  function render(queue) {
    const previousIndex = items.findIndex((i) => i.id === selected);
    items = queue.ofKind("action");
    const otherCount = queue.items.length - items.length;
    others.hidden = otherCount === 0;
    setText(others, `${otherCount} checkpoint${otherCount === 1 ? "" : "s"}/escalation${otherCount === 1 ? "" : "s"} in the queue →`);
    setText(count, items.length ? `${items.length} action${items.length === 1 ? "" : "s"} waiting for a decision`
      : "Nothing waiting");
    const fresh = new Set(items.map((i) => i.id));
    for (const [id, r] of rows) {
      if (!fresh.has(id)) {
        r.el.remove();
        rows.delete(id);
      }
    }
    items.forEach((item, index) => {
      let r = rows.get(item.id);
      if (!r) {
        r = row(item);
        rows.set(item.id, r);
      }
      r.item = item;
      showVotes(r);
      if (list.children[index] !== r.el) list.insertBefore(r.el, list.children[index] || null);
    });
    if (!items.length) {
      list.replaceChildren();
      rows.clear();
      detail = null;
      selected = null;
      pane.replaceChildren(emptyState("Inbox zero", "New requests from agents appear here as they ask."));
      return;
    }
    if (!fresh.has(selected)) {
      // The chosen item was decided (here or elsewhere): move to its neighbour, and keep keyboard focus in the list.
      const active = document.activeElement;
      const lost = !active || active === document.body || pane.contains(active) || list.contains(active);
      if (selected !== null && !pending.decidedHere.has(selected)) toast(`#${selected} was decided by someone else.`);
      const index = Math.min(Math.max(previousIndex, 0), items.length - 1);
      select(items[index].id, lost);
    } else if (!detail || detail.item.id !== selected) select(selected, false);
    else detail.update(items.find((i) => i.id === selected));
    tick();
  }

  function select(id, focus) {
    const moved = selected !== id || !detail;
    selected = id;
    for (const [rid, r] of rows) {
      if (rid === id) r.button.setAttribute("aria-current", "true");
      else r.button.removeAttribute("aria-current");
    }
    const r = rows.get(id);
    if (r && focus) {
      r.button.focus();
      r.button.scrollIntoView({ block: "nearest" });
    }
    if (moved && r) {
      detail = new ApprovalDetail(r.item);
      pane.replaceChildren(detail.el);
    }
  }

  function move(step) {
    if (!items.length) return;
    const index = items.findIndex((i) => i.id === selected);
    const next = Math.min(items.length - 1, Math.max(0, index + step));
    select(items[next].id, true);
  }

  function tick() {
    for (const r of rows.values()) setText(r.due, countdown(r.item).text);
    if (detail) detail.tick();
  }

  function onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const actions = {
      j: () => move(1), k: () => move(-1), ArrowDown: () => move(1), ArrowUp: () => move(-1),
      a: () => detail && detail.approve(), e: () => detail && detail.toggleEdit(true),
      d: () => detail && detail.focusDeny(), r: () => detail && detail.remember(), "?": showHelp,
    };
    const run = actions[event.key];
    if (!run) return;
    if (event.key.startsWith("Arrow") && !event.target.closest?.(".inbox-nav")) return;
    event.preventDefault();
    run();
  }

  document.addEventListener("keydown", onKey);
  const unsubscribe = pending.subscribe(render);
  const timer = setInterval(tick, 1000);
  if (!pending.loaded) pending.refresh();

  return () => {
    document.removeEventListener("keydown", onKey);
    unsubscribe();
    clearInterval(timer);
  };
}
