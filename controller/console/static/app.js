// The console's shell: sign-in state, the hash router, the top bar and the title badge.

import { api, setCsrf } from "./api.js";
import { hub } from "./live.js";
import { pending, session } from "./store.js";
import { setText, toast } from "./ui.js";
import * as login from "./views/login.js";
import * as fleet from "./views/fleet.js";
import * as sandbox from "./views/sandbox.js";
import * as inbox from "./views/approvals.js";
import * as queue from "./views/queue.js";
import * as audit from "./views/audit.js";

const ROUTES = { fleet, sandbox, approvals: inbox, queue, audit };
const LIVE_LABELS = { live: "Live", connecting: "Connecting", reconnecting: "Reconnecting", closed: "Offline" };
const main = document.getElementById("main");
let unmount = null;
let stopListening = [];

function parseRoute() {
  const path = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = path.split("/").map(decodeURIComponent);
  return { name: name || "fleet", params: rest };
}

function render(event) {
  if (unmount) unmount();
  unmount = null;
  main.replaceChildren();
  if (!session.user) {
    document.getElementById("topbar").hidden = true;
    unmount = login.mount(main, { onSignedIn: signedIn }) || null;
    return;
  }
  const route = parseRoute();
  const view = ROUTES[route.name];
  if (!view) {
    location.replace("#/fleet");
    return;
  }
  for (const link of document.querySelectorAll(".nav a")) {
    const current = link.dataset.route === route.name || (route.name === "sandbox" && link.dataset.route === "fleet");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  unmount = view.mount(main, route.params) || null;
  if (event && event.type === "hashchange") {
    // Moving between pages: start at the top and put screen readers at the new page.
    window.scrollTo(0, 0);
    main.focus({ preventScroll: true });
  }
}

function showCounts(queue) {
  const total = queue.total;
  document.title = total > 0 ? `(${total}) fleetgate` : "fleetgate";
  const pill = document.getElementById("pending-pill");
  setText(pill.querySelector(".pending-num"), total);
  pill.classList.toggle("has-pending", total > 0);
  pill.setAttribute("aria-label", `${total} pending approval${total === 1 ? "" : "s"}`);
  const actions = queue.ofKind("action").length;
  const others = queue.items.length - actions;
  for (const [key, value] of [["action", actions], ["other", others]]) {
    const el = document.querySelector(`.count[data-count="${key}"]`);
    setText(el, value);
    el.hidden = value === 0;
  }
}

function showLive(state) {
  const el = document.getElementById("live-state");
  el.dataset.state = state;
  setText(el.querySelector(".live-text"), LIVE_LABELS[state] || state);
  el.title = state === "live" ? "Live updates are on" : "Live updates are reconnecting; pages also refresh on a timer";
}

function startSession(user) {
  session.user = { name: user.name, role: user.role };
  if (user.csrf) setCsrf(user.csrf);
  const bar = document.getElementById("topbar");
  bar.hidden = false;
  setText(bar.querySelector(".who-name"), user.name);
  const role = bar.querySelector(".role-tag");
  setText(role, user.role);
  role.dataset.role = user.role;
  hub.start();
  stopListening = [pending.subscribe(showCounts), hub.onState(showLive)];
  pending.start();
}

function endSession() {
  stopListening.forEach((fn) => fn());
  stopListening = [];
  hub.stop();
  pending.stop();
  session.user = null;
  setCsrf(null);
  document.title = "fleetgate";
}

function signedIn(user) {
  startSession(user);
  if (!location.hash || location.hash === "#/login") location.hash = "#/fleet";
  render();
}

async function logout() {
  try {
    await api.post("/console/logout");
  } catch (e) {
    toast(e.detail || String(e), "bad");
  }
  endSession();
  render();
}

async function boot() {
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", render);
  window.addEventListener("fleetgate:unauthorized", () => {
    if (!session.user) return;
    endSession();
    toast("Your session ended; sign in again.", "warn");
    render();
  });
  try {
    const me = await api.get("/console/me");
    startSession(me);
  } catch {
    session.user = null;
  }
  render();
}

boot();
