// The workspace browser: folders on the left, the chosen file on the right. It reads through the sandbox (as
// its own user), so it works only while the sandbox runs.

import { sandboxes } from "../api.js";
import { emptyState, fmtBytes, fmtTime, h, setText } from "../ui.js";

const ROOT = "/workspace";
const ICONS = { dir: "▸", file: "·", link: "↪" };

export class FileBrowser {
  constructor(sandboxId) {
    this.sandboxId = sandboxId;
    this.path = ROOT;
    this.asked = 0;
    this.crumbs = h("nav", { class: "crumbs", "aria-label": "Folder" });
    this.list = h("ul", { class: "file-list", "aria-label": "Files" });
    this.viewerTitle = h("h3", { class: "viewer-title mono" }, "No file open");
    this.viewerMeta = h("span", { class: "muted viewer-meta" });
    this.viewerBody = h("div", { class: "viewer-body" },
      emptyState("Choose a file", "Open a file on the left to read it here."));
    this.refreshButton = h("button", { type: "button", class: "btn btn-sm btn-ghost", on: { click: () => this.open(this.path) } },
      "Refresh");
    this.el = h("div", { class: "files" },
      h("div", { class: "files-nav" }, h("div", { class: "files-bar" }, this.crumbs, this.refreshButton), this.list),
      h("div", { class: "files-viewer" }, h("div", { class: "viewer-head" }, this.viewerTitle, this.viewerMeta),
        this.viewerBody));
  }

  showCrumbs() {
    const parts = this.path.split("/").filter(Boolean);
    const links = parts.map((part, i) => {
      const target = `/${parts.slice(0, i + 1).join("/")}`;
      if (i === parts.length - 1) return h("span", { "aria-current": "location", class: "mono" }, part);
      return h("button", { type: "button", class: "crumb mono", on: { click: () => this.open(target) } }, part);
    });
    this.crumbs.replaceChildren(...links.flatMap((link, i) => (i ? [h("span", { class: "sep", "aria-hidden": "true" }, "/"), link] : [link])));
  }

  notice(text, tone = "muted") {
    this.list.replaceChildren(h("li", { class: `file-note tone-${tone}` }, text));
  }

  /** List a folder; a sandbox that does not run answers 409, which is said plainly. Only the latest request
   * is shown: a listing asked for while the sandbox still ran may answer after the one asked for once it stopped. */
  async open(path) {
    const asked = ++this.asked;
    this.path = path;
    this.showCrumbs();
    this.notice("Loading…");
    try {
      const page = await sandboxes.files(this.sandboxId, path);
      if (asked !== this.asked) return;
      this.path = page.path;
      this.showCrumbs();
      const rows = [];
      if (page.path !== ROOT) {
        const parent = page.path.slice(0, page.path.lastIndexOf("/")) || ROOT;
        rows.push(this.row({ name: "..", type: "dir" }, parent, "Parent folder"));
      }
      for (const item of page.items) rows.push(this.row(item, `${page.path}/${item.name}`));
      if (!page.items.length) rows.push(h("li", { class: "file-note muted" }, "This folder is empty."));
      this.list.replaceChildren(...rows);
    } catch (e) {
      if (asked !== this.asked) return;
      this.notice(e.status === 409 ? "The workspace can be read while the sandbox runs." : e.detail || String(e),
        e.status === 409 ? "muted" : "bad");
    }
  }

  row(item, target, label) {
    const isDir = item.type === "dir";
    const button = h("button", {
      type: "button", class: `file-item file-${item.type}`,
      "aria-label": label || `${isDir ? "Folder" : item.type === "link" ? "Link" : "File"} ${item.name}`,
      on: { click: () => (isDir ? this.open(target) : this.read(target, button)) },
    },
    h("span", { class: "file-icon", "aria-hidden": "true" }, ICONS[item.type] || "·"),
    h("span", { class: "file-name mono" }, item.name),
    item.type === "file" ? h("span", { class: "file-size muted" }, fmtBytes(item.size)) : null,
    item.mtime ? h("span", { class: "file-time muted" }, fmtTime(item.mtime)) : null);
    return h("li", {}, button);
  }

  async read(path, button) {
    for (const el of this.list.querySelectorAll("[aria-current]")) el.removeAttribute("aria-current");
    if (button) button.setAttribute("aria-current", "true");
    setText(this.viewerTitle, path.replace(`${ROOT}/`, ""));
    setText(this.viewerMeta, "Loading…");
    try {
      const file = await sandboxes.file(this.sandboxId, path);
      const notes = [fmtBytes(file.size)];
      if (file.truncated) notes.push("showing the first 256 KiB");
      setText(this.viewerMeta, notes.join(" · "));
      if (file.binary || file.content === null) {
        this.viewerBody.replaceChildren(emptyState("Binary file", "It is not shown here."));
      } else {
        this.viewerBody.replaceChildren(h("pre", { class: "code file-content", tabindex: "0" }, file.content || ""));
      }
    } catch (e) {
      setText(this.viewerMeta, "");
      this.viewerBody.replaceChildren(h("p", { class: "form-error" }, e.detail || String(e)));
    }
  }
}
