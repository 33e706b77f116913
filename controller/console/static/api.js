// The controller's HTTP API, as the console uses it: same-origin cookies, the CSRF header on every change,
// and errors turned into ApiError with the server's own message.

const CSRF_COOKIE = "fleetgate_csrf";
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function describe(detail, status) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  }
  return `the server answered ${status}`;
}

/** Build a query string from an object, leaving out undefined and null values. */
export function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") {
    const token = csrfToken || cookie(CSRF_COOKIE);
    if (token) headers["X-CSRF-Token"] = token;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "the controller is not reachable; check that it runs and try again");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 300) };
    }
  }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/console/login")) {
      window.dispatchEvent(new CustomEvent("fleetgate:unauthorized"));
    }
    throw new ApiError(response.status, describe(data && data.detail, response.status));
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path + qs(params)),
  post: (path, body) => request("POST", path, body === undefined ? {} : body),
  del: (path) => request("DELETE", path),
};

export const sandboxes = {
  list: () => api.get("/api/v1/sandboxes", { limit: 1000 }),
  get: (id) => api.get(`/api/v1/sandboxes/${encodeURIComponent(id)}`),
  create: (template) => api.post("/api/v1/sandboxes", { template }),
  act: (id, verb) => api.post(`/api/v1/sandboxes/${encodeURIComponent(id)}/${verb}`),
  remove: (id) => api.del(`/api/v1/sandboxes/${encodeURIComponent(id)}`),
  logs: (id, tail) => api.get(`/api/v1/sandboxes/${encodeURIComponent(id)}/logs`, { tail }),
  files: (id, path) => api.get(`/api/v1/sandboxes/${encodeURIComponent(id)}/files`, { path }),
  file: (id, path) => api.get(`/api/v1/sandboxes/${encodeURIComponent(id)}/files/content`, { path }),
};

export const approvals = {
  list: (params) => api.get("/api/v1/approvals", params),
  decide: (id, body) => api.post(`/api/v1/approvals/${id}/decision`, body),
  preview: (id, scope) => api.get(`/api/v1/approvals/${id}/preview`, { scope }),
  take: (id) => api.post(`/api/v1/approvals/${id}/take`),
};
