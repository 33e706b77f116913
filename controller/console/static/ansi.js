// ANSI SGR colours to DOM nodes. Only SGR sequences are interpreted; other escape sequences are dropped and all
// text goes in through text nodes, so nothing an agent prints can become markup.

// CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), or a lone two-character escape.
const ESCAPES = /\x1b\[([0-9;:<=>?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?/g;
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;
const CUBE = [0, 95, 135, 175, 215, 255];

export function newState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

function reset(state) {
  Object.assign(state, newState());
}

/** The colour of a 256-colour index: 0-15 are palette classes (themeable), the rest are RGB. */
function indexed(n) {
  if (n < 16) return { index: n };
  if (n < 232) {
    const c = n - 16;
    return { rgb: [CUBE[Math.floor(c / 36)], CUBE[Math.floor(c / 6) % 6], CUBE[c % 6]] };
  }
  const grey = 8 + (n - 232) * 10;
  return { rgb: [grey, grey, grey] };
}

/** Read an extended colour (38/48) starting at codes[i]; returns [colour|null, index of last code used]. */
function extended(codes, i) {
  const mode = codes[i + 1];
  if (mode === 5 && codes.length > i + 2) {
    const n = codes[i + 2];
    return [n >= 0 && n <= 255 ? indexed(n) : null, i + 2];
  }
  if (mode === 2 && codes.length > i + 4) {
    const rgb = codes.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v)));
    return [{ rgb }, i + 4];
  }
  return [null, codes.length];
}

export function applySgr(state, params) {
  // "38:2::r:g:b" (colon form) carries an empty colour-space slot; drop it so it reads like "38;2;r;g;b".
  const text = params.replace(/([34]8):2::/g, "$1;2;").replace(/:/g, ";");
  const codes = text === "" ? [0] : text.split(";").map((p) => (p === "" ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    if (code === 0) reset(state);
    else if (code === 1) state.bold = true;
    else if (code === 2) state.dim = true;
    else if (code === 3) state.italic = true;
    else if (code === 4) state.underline = true;
    else if (code === 22) state.bold = state.dim = false;
    else if (code === 23) state.italic = false;
    else if (code === 24) state.underline = false;
    else if (code >= 30 && code <= 37) state.fg = { index: code - 30 };
    else if (code >= 90 && code <= 97) state.fg = { index: code - 90 + 8 };
    else if (code >= 40 && code <= 47) state.bg = { index: code - 40 };
    else if (code >= 100 && code <= 107) state.bg = { index: code - 100 + 8 };
    else if (code === 39) state.fg = null;
    else if (code === 49) state.bg = null;
    else if (code === 38 || code === 48) {
      const [colour, last] = extended(codes, i);
      if (colour) state[code === 38 ? "fg" : "bg"] = colour;
      i = last;
    }
  }
}

function styled(state) {
  return state.fg || state.bg || state.bold || state.dim || state.italic || state.underline;
}

function span(state, text) {
  const el = document.createElement("span");
  const classes = [];
  if (state.fg && state.fg.index !== undefined) classes.push(`ansi-fg-${state.fg.index}`);
  if (state.bg && state.bg.index !== undefined) classes.push(`ansi-bg-${state.bg.index}`);
  if (state.bold) classes.push("ansi-bold");
  if (state.dim) classes.push("ansi-dim");
  if (state.italic) classes.push("ansi-italic");
  if (state.underline) classes.push("ansi-underline");
  if (classes.length) el.className = classes.join(" ");
  if (state.fg && state.fg.rgb) el.style.color = `rgb(${state.fg.rgb.join(", ")})`;
  if (state.bg && state.bg.rgb) el.style.backgroundColor = `rgb(${state.bg.rgb.join(", ")})`;
  el.textContent = text;
  return el;
}

function emit(parent, state, text) {
  if (!text) return;
  const clean = text.replace(CONTROL, "");
  if (!clean) return;
  parent.append(styled(state) ? span(state, clean) : document.createTextNode(clean));
}

/**
 * Append one line of terminal output to `parent` as text nodes and styled spans. `state` carries the SGR state
 * from line to line (as a terminal does); pass newState() for a one-off.
 */
export function appendAnsi(parent, line, state = newState()) {
  let text = String(line);
  if (text.includes("\r")) {
    // A carriage return redraws the line (progress bars): keep what was drawn last.
    const parts = text.split("\r").filter((p) => p !== "");
    text = parts.length ? parts[parts.length - 1] : "";
  }
  let last = 0;
  ESCAPES.lastIndex = 0;
  for (let match = ESCAPES.exec(text); match; match = ESCAPES.exec(text)) {
    emit(parent, state, text.slice(last, match.index));
    const [whole, params, final] = match;
    if (final === "m" && whole.startsWith("\x1b[") && !/[<=>?]/.test(params)) applySgr(state, params);
    last = match.index + whole.length;
  }
  emit(parent, state, text.slice(last));
  return parent;
}

/** The plain text of a line, without any escape sequence (for search and copying). */
export function stripAnsi(line) {
  return String(line).replace(ESCAPES, "").replace(CONTROL, "");
}
