// The fleet: every sandbox, live. Events update a model; one requestAnimationFrame per burst writes the DOM.

import { api, sandboxes } from "../api.js";
import { hub } from "../live.js";
import { can, pending } from "../store.js";
import { busy, confirmAction, emptyState, h, setText, toast } from "../ui.js";
import { FleetRow, searchText } from "./fleet-row.js";

const STATUSES = ["creating", "running", "paused", "exited", "stopped", "gone", "failed"];
const REFETCH_MS = 15_000;

export function mount(root) {
  const models = new Map();
  const dirty = new Set();
  const fetching = new Set();
  const unseen = new Set(); // ids the API does not list (warm-pool entries): not asked for again on every event
  let structureChanged = false;
  let frame = 0;
  let filter = { status: "", text: "" };

  const summary = h("p", { class: "page-sub" }, "Loading…");
  const templateSelect = h("select", { id: "launch-template", name: "template" });
  const launchButton = h("button", { type: "submit", class: "btn btn-primary", disabled: true }, "Launch sandbox");
  const launch = h("form", { class: "launch", "aria-label": "Launch a sandbox from a template" },
    h("label", { for: "launch-template", class: "inline-label" }, "Template"), templateSelect, launchButton);
  const statusSelect = h("select", { id: "fleet-status" },
    h("option", { value: "" }, "All statuses"), STATUSES.map((s) => h("option", { value: s }, s)));
  const search = h("input", {
    id: "fleet-search", type: "search", placeholder: "Search id, image, agent, action…", autocomplete: "off",
  });
  const tbody = h("tbody");
  const table = h("table", { class: "table rt fleet-table" },
    h("caption", { class: "sr-only" }, "Sandboxes, newest first"),
    h("thead", {}, h("tr", {}, ["Sandbox", "Status", "Agent", "Current action", "Pending", "CPU", "Memory", "Age"]
      .map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Controls")))),
    tbody);
  const empty = h("div", { hidden: true });

  root.append(h("section", { class: "page", "aria-labelledby": "fleet-title" },
    h("div", { class: "page-head" },
      h("div", {}, h("h1", { id: "fleet-title" }, "Fleet"), summary),
      can("operator") ? launch : null),
    h("div", { class: "toolbar", role: "search" },
      h("label", { for: "fleet-status", class: "inline-label" }, "Status"), statusSelect,
      h("label", { for: "fleet-search", class: "sr-only" }, "Search sandboxes"), search),
    h("div", { class: "table-wrap" }, table),
    empty));

  function schedule() {
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function touch(id) {
    dirty.add(id);
    schedule();
  }

  function upsert(sandbox) {
    if (sandbox.status === "removed") {
      drop(sandbox.id);
      return;
    }
    const model = models.get(sandbox.id);
    if (model) model.sandbox = sandbox;
    else {
      models.set(sandbox.id, { sandbox, action: null, agent: null, res: null, pending: 0, row: null });
      structureChanged = true;
    }
    touch(sandbox.id);
  }

  function drop(id) {
    const model = models.get(id);
    if (!model) return;
    if (model.row) model.row.el.remove();
    models.delete(id);
    structureChanged = true;
    schedule();
  }

  function visible(model) {
    if (filter.status && model.sandbox.status !== filter.status) return false;
    return !filter.text || searchText(model).includes(filter.text);
  }

  function flush() {
    frame = 0;
    for (const id of dirty) {
      const model = models.get(id);
      if (!model) continue;
      if (model.row) model.row.update(model);
      else model.row = new FleetRow(model, { onStop: stop, onRemove: remove });
      model.row.el.hidden = !visible(model);
    }
    dirty.clear();
    if (structureChanged) {
      structureChanged = false;
      const ordered = [...models.values()].sort((a, b) => (a.sandbox.created_at < b.sandbox.created_at ? 1 : -1));
      ordered.forEach((model, index) => {
        if (tbody.children[index] !== model.row.el) tbody.insertBefore(model.row.el, tbody.children[index] || null);
      });
    }
    showSummary();
  }

  function showSummary() {
    const all = [...models.values()];
    const running = all.filter((m) => m.sandbox.status === "running").length;
    const shown = all.filter((m) => !m.row || !m.row.el.hidden).length;
    const waiting = all.reduce((sum, m) => sum + (m.pending || 0), 0);
    const parts = [`${all.length} sandbox${all.length === 1 ? "" : "es"}`, `${running} running`];
    if (waiting) parts.push(`${waiting} waiting on people`);
    if (shown !== all.length) parts.push(`${shown} shown`);
    setText(summary, parts.join(" · "));
    empty.hidden = shown > 0;
    table.hidden = shown === 0;
    if (shown === 0) {
      empty.replaceChildren(all.length
        ? emptyState("No sandbox matches", "Change the status filter or the search.")
        : emptyState("No sandboxes yet", can("operator")
          ? "Launch one from a template above, or with `fleetgate sandbox create`."
          : "Operators launch sandboxes; they appear here live."));
    }
  }

  function applyFilter() {
    filter = { status: statusSelect.value, text: search.value.trim().toLowerCase() };
    models.forEach((_, id) => dirty.add(id));
    schedule();
  }

  async function fetchOne(id) {
    if (fetching.has(id) || unseen.has(id)) return;
    fetching.add(id);
    try {
      upsert(await sandboxes.get(id));
    } catch (e) {
      if (e.status === 404) unseen.add(id);
      else console.warn("could not load sandbox", id, e);
    } finally {
      fetching.delete(id);
    }
  }

  async function loadAll() {
    try {
      const page = await sandboxes.list();
      const seen = new Set(page.items.map((s) => s.id));
      for (const id of [...models.keys()]) if (!seen.has(id)) drop(id);
      page.items.forEach(upsert);
      schedule();
    } catch (e) {
      setText(summary, `Could not load the fleet: ${e.detail || e}`);
    }
  }

  async function loadActions() {
    try {
      const page = await api.get("/api/v1/actions", { limit: 500 });
      const newestFirst = new Set();
      for (const action of page.items) {
        const model = models.get(action.sandbox_id);
        if (!model || newestFirst.has(action.sandbox_id)) continue;
        newestFirst.add(action.sandbox_id);
        if (!model.action) {
          model.action = { tool: action.tool, status: action.status, decided_by: action.decided_by };
          touch(action.sandbox_id);
        }
      }
    } catch (e) {
      console.warn("could not load recent actions", e);
    }
  }

  async function loadTemplates() {
    if (!can("operator")) return;
    try {
      const page = await api.get("/api/v1/templates");
      templateSelect.replaceChildren(...page.items.map((t) =>
        h("option", { value: t.name }, t.pool_size ? `${t.name} (${t.pool_ready}/${t.pool_size} warm)` : t.name)));
      launchButton.disabled = page.items.length === 0;
      if (!page.items.length) templateSelect.append(h("option", { value: "" }, "no templates"));
    } catch (e) {
      toast(`Could not load templates: ${e.detail || e}`, "bad");
    }
  }

  async function stop(id, button) {
    const sandbox = await busy(button, () => sandboxes.act(id, "stop"));
    if (sandbox) {
      upsert(sandbox);
      toast(`Stopped ${id}`, "ok");
    }
  }

  async function remove(id, button) {
    const ok = await confirmAction({
      title: `Remove ${id}?`,
      message: "Its container and workspace volume are deleted. Its actions and audit entries are kept.",
      confirm: "Remove sandbox",
    });
    if (!ok) return;
    const sandbox = await busy(button, () => sandboxes.remove(id));
    if (sandbox) {
      drop(id);
      toast(`Removed ${id}`, "ok");
    }
  }

  launch.addEventListener("submit", async (event) => {
    event.preventDefault();
    const template = templateSelect.value;
    if (!template) return;
    const sandbox = await busy(launchButton, () => sandboxes.create(template));
    if (sandbox) {
      upsert(sandbox);
      toast(`Launched ${sandbox.id} from ${template}`, "ok");
      loadTemplates();
    }
  });
  statusSelect.addEventListener("change", applyFilter);
  search.addEventListener("input", applyFilter);

  const onEvent = (event) => {
    const id = event.sandbox_id;
    const model = models.get(id);
    const data = event.data || {};
    if (event.kind === "lifecycle") {
      unseen.delete(id); // a pooled sandbox that is claimed becomes visible
      if (data.status === "removed") drop(id);
      else if (!model) fetchOne(id);
      else {
        model.sandbox = { ...model.sandbox, status: data.status ?? model.sandbox.status,
          exit_code: data.exit_code ?? model.sandbox.exit_code };
        touch(id);
        if (["exited", "failed", "gone", "stopped"].includes(data.status)) fetchOne(id);
      }
      return;
    }
    if (!model) {
      if (event.kind !== "approval") fetchOne(id);
      return;
    }
    if (event.kind === "action") model.action = data;
    else if (event.kind === "agent") model.agent = data.state === "exited" && data.exit_code !== undefined
      ? `exited (${data.exit_code})` : data.state;
    else if (event.kind === "resources") model.res = data;
    touch(id);
  };
  const showPending = (queue) => {
    const counts = queue.bySandbox();
    for (const [id, model] of models) {
      const count = counts.get(id) || 0;
      if (model.pending !== count) {
        model.pending = count;
        touch(id);
      }
    }
  };

  const unsubscribe = [hub.on(["lifecycle", "action", "agent", "resources"], onEvent), pending.subscribe(showPending)];
  const timer = setInterval(loadAll, REFETCH_MS);
  const ageTimer = setInterval(() => models.forEach((_, id) => touch(id)), 30_000);
  loadTemplates();
  loadAll().then(() => {
    showPending(pending);
    loadActions();
  });

  return () => {
    unsubscribe.forEach((fn) => fn());
    clearInterval(timer);
    clearInterval(ageTimer);
    if (frame) cancelAnimationFrame(frame);
  };
}
