// Sign in with an API token; the controller answers with a session cookie and a CSRF token.

import { api, setCsrf } from "../api.js";
import { brandMark, h } from "../ui.js";

export function mount(root, { onSignedIn }) {
  document.title = "Sign in · fleetgate";
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, placeholder: "fg_…", "aria-describedby": "token-help",
  });
  const error = h("p", { class: "form-error", id: "login-error", role: "alert" });
  const button = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Sign in");
  const form = h("form", { class: "login-form", novalidate: true },
    h("label", { for: "token", class: "field-label" }, "API token"),
    input,
    h("p", { id: "token-help", class: "hint" },
      "Paste the token an admin made for you (they run ", h("code", {}, "fleetgate token create"), ")."),
    error,
    button);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!token) {
      fail("Enter your API token.");
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const user = await api.post("/console/login", { token });
      setCsrf(user.csrf);
      onSignedIn(user);
    } catch (e) {
      fail(e.status === 401 || e.status === 422
        ? "That token was not accepted. Check that you pasted all of it and that it has not been revoked."
        : e.detail);
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });

  function fail(message) {
    error.textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    input.select();
  }

  root.append(h("section", { class: "login", "aria-labelledby": "login-title" },
    h("div", { class: "login-card" },
      h("div", { class: "login-brand" },
        brandMark(),
        h("span", {}, "fleetgate")),
      h("h1", { id: "login-title" }, "Sign in to the console"),
      h("p", { class: "muted" }, "Agents in sandboxes, under your oversight."),
      form)));
  input.focus();
}
