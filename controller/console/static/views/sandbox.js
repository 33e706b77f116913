// One sandbox: its live output, its action timeline, its egress, its workspace, and the controls an operator needs.

import { api, sandboxes } from "../api.js";
import { ALL_KINDS, openStream } from "../live.js";
import { can, pending } from "../store.js";
import { badge, busy, confirmAction, fmtBytes, fmtTime, h, setText, toast, updateBadge } from "../ui.js";
import { EgressPanel } from "./egress.js";
import { FileBrowser } from "./files.js";
import { Terminal } from "./terminal.js";
import { renderTimeline } from "./timeline.js";

const REFETCH_MS = 10_000;
const LIVE = new Set(["creating", "running", "paused"]);

export function mount(root, [id]) {
  let sandbox = null;
  let changed = 0; // bumped by this page's own actions: a read started before one of them is out of date
  let agentState = null;
  let res = null;
  let actionTimer = 0;
  let sandboxTimer = 0;
  let frame = 0;
  let closeStream = null;

  const status = badge("creating", "loading");
  const title = h("h1", { class: "mono page-title-mono", id: "sb-title" }, id);
  const buttons = {
    pause: h("button", { type: "button", class: "btn", on: { click: () => act("pause") } }, "Pause"),
    resume: h("button", { type: "button", class: "btn", on: { click: () => act("resume") } }, "Resume"),
    stop: h("button", { type: "button", class: "btn", on: { click: () => act("stop") } }, "Stop"),
    remove: h("button", { type: "button", class: "btn btn-danger-ghost", on: { click: remove } }, "Remove"),
  };
  const meta = h("dl", { class: "meta" });
  const pendingNote = h("a", { class: "pending-banner", href: "#/approvals", hidden: true });
  const terminal = new Terminal({ label: `Output of ${id}` });
  const lineCount = h("span", { class: "muted small" });
  const timeline = h("ol", { class: "timeline", "aria-label": "Actions, newest first" });
  const files = can("operator") ? new FileBrowser(id) : null;
  const egress = new EgressPanel(id);

  root.append(h("section", { class: "page sandbox-page", "aria-labelledby": "sb-title" },
    h("a", { class: "back", href: "#/fleet" }, "← Fleet"),
    h("div", { class: "page-head" },
      h("div", { class: "title-row" }, title, status),
      can("operator") ? h("div", { class: "button-row", role: "group", "aria-label": "Sandbox controls" },
        Object.values(buttons)) : null),
    pendingNote,
    meta,
    h("div", { class: "sandbox-grid" },
      h("section", { class: "panel panel-terminal", "aria-labelledby": "out-title" },
        h("div", { class: "panel-head" }, h("h2", { id: "out-title" }, "Output"), lineCount), terminal.el),
      h("section", { class: "panel panel-timeline", "aria-labelledby": "act-title" },
        h("div", { class: "panel-head" }, h("h2", { id: "act-title" }, "Actions")), timeline)),
    egress.el,
    h("section", { class: "panel", "aria-labelledby": "files-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "files-title" }, "Workspace")),
      files ? files.el : h("p", { class: "muted pad" }, "Operators and admins can browse the workspace."))));

  terminal.el.addEventListener("lines", (e) => {
    const { total, dropped } = e.detail;
    setText(lineCount, dropped ? `last ${total - dropped} of ${total} lines` : `${total} line${total === 1 ? "" : "s"}`);
  });

  function fmtMiB(mb) {
    return mb >= 1024 ? `${(mb / 1024).toFixed(mb % 1024 ? 1 : 0)} GiB` : `${Math.round(mb * 10) / 10} MiB`;
  }

  function metaRow(label, value, cls, wide = false) {
    const shown = value === null || value === undefined || value === "" ? "—" : value;
    const title = typeof shown === "string" && shown.length > 60 ? shown : undefined;
    return h("div", { class: wide ? "wide" : undefined }, h("dt", {}, label), h("dd", { class: cls, title }, shown));
  }

  function showSandbox() {
    const s = sandbox;
    updateBadge(status, s.status);
    const r = s.resources || {};
    const limits = [r.cpus ? `${r.cpus} CPU` : null, r.memory_mb ? `${r.memory_mb} MiB` : null,
      r.pids ? `${r.pids} pids` : null, r.disk_mb ? `${fmtMiB(r.disk_mb)} workspace` : null]
      .filter(Boolean).join(" · ");
    const disk = res && typeof res.disk_used_mb === "number"
      ? { used: res.disk_used_mb, limit: res.disk_limit_mb } : s.workspace && { used: s.workspace.used_mb, limit: s.workspace.limit_mb };
    const workspace = disk ? `${fmtMiB(disk.used)} of ${fmtMiB(disk.limit)} used (${Math.round((100 * disk.used) / disk.limit)}%)` : null;
    const usage = res && LIVE.has(s.status)
      ? [typeof res.cpu_pct === "number" ? `${res.cpu_pct.toFixed(1)}% CPU` : null, fmtBytes(res.mem_bytes),
        res.pids ? `${res.pids} pids` : null].filter(Boolean).join(" · ")
      : null;
    meta.replaceChildren(...[
      metaRow("Template", s.template),
      metaRow("Image", s.image, "mono"),
      metaRow("Command", s.command ? s.command.join(" ") : null, "mono clamp", true),
      metaRow("Host", s.host),
      metaRow("Limits", limits),
      metaRow("Usage", usage),
      metaRow("Workspace", workspace, disk && disk.used >= disk.limit * 0.95 ? "tone-bad" : undefined),
      metaRow("Agent", agentState),
      metaRow("Created", fmtTime(s.created_at)),
      metaRow("Started", fmtTime(s.started_at)),
      metaRow(s.finished_at ? "Finished" : "Expires", fmtTime(s.finished_at || s.expires_at)),
      s.exit_code !== null && s.exit_code !== undefined ? metaRow("Exit code", String(s.exit_code), "mono") : null,
      s.error ? metaRow("Error", s.error, "tone-bad", true) : null,
    ].filter(Boolean));
    buttons.pause.hidden = s.status === "paused";
    buttons.resume.hidden = s.status !== "paused";
    buttons.pause.disabled = s.status !== "running";
    buttons.stop.disabled = !LIVE.has(s.status);
    buttons.remove.disabled = s.status === "removed";
  }

  /** Show a newer state of the sandbox; the workspace is read again when it starts or stops running (it is read
   * through the running container, so the listing would otherwise go stale or fail on the next click). */
  function setSandbox(next) {
    const wasRunning = sandbox ? sandbox.status === "running" : null; // null: the first load always reads it
    sandbox = next;
    showSandbox();
    if (files && wasRunning !== (next.status === "running")) files.open(files.path);
  }

  async function loadSandbox() {
    const since = changed;
    try {
      const next = await sandboxes.get(id);
      if (since === changed) setSandbox(next);
    } catch (e) {
      updateBadge(status, "failed", e.status === 404 ? "not found" : "error");
      meta.replaceChildren(h("p", { class: "form-error" }, e.detail || String(e)));
    }
  }

  async function loadActions() {
    try {
      const page = await api.get("/api/v1/actions", { sandbox: id, limit: 200 });
      renderTimeline(timeline, page.items);
    } catch (e) {
      timeline.replaceChildren(h("li", { class: "form-error" }, e.detail || String(e)));
    }
  }

  /** Redraw the header once per frame at most (a replayed stream can hold thousands of samples). */
  function showSoon() {
    if (!frame && sandbox) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        showSandbox();
      });
    }
  }

  function sandboxSoon() {
    clearTimeout(sandboxTimer);
    sandboxTimer = setTimeout(loadSandbox, 150);
  }

  function actionsSoon() {
    clearTimeout(actionTimer);
    actionTimer = setTimeout(loadActions, 150);
  }

  async function act(verb) {
    const result = await busy(buttons[verb], () => sandboxes.act(id, verb));
    if (result) {
      changed += 1;
      setSandbox(result);
      toast(`${verb === "stop" ? "Stopped" : verb === "pause" ? "Paused" : "Resumed"} ${id}`, "ok");
    }
  }

  async function remove() {
    const ok = await confirmAction({
      title: `Remove ${id}?`,
      message: "Its container and workspace volume are deleted. Its actions and audit entries are kept.",
      confirm: "Remove sandbox",
    });
    if (!ok) return;
    if (await busy(buttons.remove, () => sandboxes.remove(id))) {
      toast(`Removed ${id}`, "ok");
      location.hash = "#/fleet";
    }
  }

  function onEvent(event) {
    const data = event.data || {};
    if (event.kind === "stdout" || event.kind === "stderr") terminal.push(event.kind, data.line ?? "", data.ts);
    else if (event.kind === "lifecycle") {
      if (sandbox) setSandbox({ ...sandbox, status: data.status || sandbox.status });
      sandboxSoon();
    } else if (event.kind === "action") {
      actionsSoon();
      egress.push(event);
    } else if (event.kind === "egress") egress.push(event);
    else if (event.kind === "resources") {
      res = data;
      showSoon();
    } else if (event.kind === "agent") {
      agentState = data.exit_code !== undefined && data.state === "exited" ? `exited (${data.exit_code})` : data.state;
      showSoon();
    }
  }

  function showPending(queue) {
    const count = queue.items.filter((item) => item.sandbox_id === id).length;
    pendingNote.hidden = count === 0;
    setText(pendingNote, `${count} item${count === 1 ? "" : "s"} from this sandbox waiting for a decision — open the inbox`);
  }

  closeStream = openStream({ sandbox: id, kinds: [...ALL_KINDS, "egress"], after: "0" }, onEvent);
  const unsubscribe = pending.subscribe(showPending);
  const timer = setInterval(() => {
    loadSandbox();
    loadActions();
    egress.load();
  }, REFETCH_MS);
  loadSandbox();
  loadActions();
  egress.load();

  return () => {
    closeStream();
    unsubscribe();
    clearInterval(timer);
    clearTimeout(actionTimer);
    clearTimeout(sandboxTimer);
    if (frame) cancelAnimationFrame(frame);
    terminal.destroy();
    egress.destroy();
  };
}
