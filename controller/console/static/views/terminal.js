// A terminal-like view of a sandbox's output: ANSI colours, a cap on kept lines, batched appends, and it sticks
// to the bottom unless the reader scrolled up (then a button brings them back).

import { appendAnsi, newState } from "../ansi.js";
import { fmtTime, h, setText } from "../ui.js";

export class Terminal {
  constructor({ label = "Output", maxLines = 5000, compact = false } = {}) {
    this.maxLines = maxLines;
    this.queue = [];
    this.frame = 0;
    this.follow = true;
    this.unseen = 0;
    this.total = 0;
    this.dropped = 0;
    this.states = { stdout: newState(), stderr: newState() };
    this.screen = h("div", {
      class: "term-screen", role: "log", "aria-live": "off", "aria-label": label, tabindex: "0",
    });
    this.placeholder = h("p", { class: "term-empty" }, "No output yet.");
    this.screen.append(this.placeholder);
    this.jump = h("button", { type: "button", class: "term-jump", hidden: true, on: { click: () => this.toBottom() } },
      "Jump to latest");
    this.el = h("div", { class: `terminal${compact ? " terminal-compact" : ""}` }, this.screen, this.jump);
    this.screen.addEventListener("scroll", () => this.onScroll(), { passive: true });
  }

  setEmptyText(text) {
    setText(this.placeholder, text);
  }

  onScroll() {
    const atBottom = this.screen.scrollTop + this.screen.clientHeight >= this.screen.scrollHeight - 6;
    if (atBottom !== this.follow) {
      this.follow = atBottom;
      if (atBottom) this.unseen = 0;
      this.showJump();
    }
  }

  showJump() {
    this.jump.hidden = this.follow;
    setText(this.jump, this.unseen ? `${this.unseen} new line${this.unseen === 1 ? "" : "s"} — jump to latest`
      : "Jump to latest");
  }

  toBottom() {
    this.follow = true;
    this.unseen = 0;
    this.screen.scrollTop = this.screen.scrollHeight;
    this.showJump();
  }

  /** Queue one line; lines are written in one batch per animation frame. */
  push(stream, line, ts) {
    this.queue.push([stream, line, ts]);
    if (this.queue.length > this.maxLines) this.queue.splice(0, this.queue.length - this.maxLines);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    if (!this.queue.length) return;
    if (this.placeholder.isConnected) this.placeholder.remove();
    const fragment = document.createDocumentFragment();
    for (const [stream, line, ts] of this.queue) {
      const row = h("div", { class: stream === "stderr" ? "tl tl-err" : "tl" });
      if (ts) row.title = `${stream} · ${fmtTime(ts)}`;
      appendAnsi(row, line, this.states[stream] || this.states.stdout);
      if (!row.firstChild) row.append("\u200b");
      fragment.append(row);
    }
    const added = this.queue.length;
    this.queue = [];
    this.total += added;
    this.screen.append(fragment);
    const excess = this.screen.childElementCount - this.maxLines;
    for (let i = 0; i < excess; i += 1) this.screen.firstElementChild.remove();
    if (excess > 0) this.dropped += excess;
    if (this.follow) this.screen.scrollTop = this.screen.scrollHeight;
    else {
      this.unseen += added;
      this.showJump();
    }
    this.el.dispatchEvent(new CustomEvent("lines", { detail: { total: this.total, dropped: this.dropped } }));
  }

  clear() {
    this.queue = [];
    this.screen.replaceChildren(this.placeholder);
    this.states = { stdout: newState(), stderr: newState() };
    this.total = 0;
    this.dropped = 0;
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}
