// The management API (same origin). A 401 anywhere ends the session.

export const BASE = "/api/management/v1/iot-manager";
const KEY = "devicehooks.token";

export const session = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  set(token) {
    sessionStorage.setItem(KEY, token);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
  /** The tenant the token names (read for display only; the server verifies the token). */
  tenant() {
    try {
      const part = (this.token || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
      return typeof claims["mender.tenant"] === "string" ? claims["mender.tenant"] : null;
    } catch {
      return null;
    }
  },
};

export class ApiError extends Error {
  constructor(status, message, requestId) {
    super(message);
    this.status = status;
    this.requestId = requestId;
  }
}

/** Thrown after a 401 has sent the user back to sign-in; views just stop. */
export class SignedOut extends Error {}

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return [body.error || body.message || response.statusText, body.request_id];
  } catch {
    return [response.statusText || `HTTP ${response.status}`, null];
  }
}

/** Calls the API; resolves with the parsed JSON (or null for an empty body), rejects with ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError(0, `The API could not be reached (${err.message})`, null);
  }
  if (response.status === 401) {
    const [message] = await errorText(response);
    onUnauthorized(message);
    throw new SignedOut(message);
  }
  if (!response.ok) {
    const [message, requestId] = await errorText(response);
    throw new ApiError(response.status, message, requestId);
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** The local stack's helpers (absent when deployed: /local/info is a 404 there). */
export async function localInfo() {
  try {
    const response = await fetch("/local/info", { cache: "no-store", credentials: "omit" });
    if (!response.ok) return null;
    const info = await response.json();
    return info && info.local === true ? info : null;
  } catch {
    return null;
  }
}

export async function devToken(tenant) {
  const response = await fetch("/local/dev-token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tenant }),
    credentials: "omit",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.token !== "string") {
    throw new ApiError(response.status, body.error || body.message || "No token was issued", null);
  }
  return body.token;
}

export const integrations = {
  list: () => api("GET", "/integrations"),
  get: (id) => api("GET", `/integrations/${encodeURIComponent(id)}`),
  create: (body) => api("POST", "/integrations", body),
  update: (id, changes) => api("PUT", `/integrations/${encodeURIComponent(id)}`, changes),
  remove: (id) => api("DELETE", `/integrations/${encodeURIComponent(id)}`),
  setCredentials: (id, url, secret) =>
    api("PUT", `/integrations/${encodeURIComponent(id)}/credentials`, { type: "http", http: { url, secret } }),
  /** `type`: a sample of that event type; none: a "webhook-test" event. */
  test: (id, type) => api("POST", `/integrations/${encodeURIComponent(id)}/test`, type ? { type } : undefined),
  health: (id) => api("GET", `/integrations/${encodeURIComponent(id)}/health`),
  recover: (id, since, until) =>
    api("POST", `/integrations/${encodeURIComponent(id)}/recover`, until ? { since, until } : { since }),
  /** The public addresses webhook requests come from (empty: no static addresses). */
  egress: () => api("GET", "/egress"),
};

export const events = {
  /** `filters`: device_id or device_prefix, status, type, from, to (RFC 3339, from <= time < to); empty ones
   * are left out. No `integrationId`: the tenant's events across all its webhooks. */
  list: (integrationId, page, perPage, filters = {}) => {
    const query = new URLSearchParams({ page: String(page), per_page: String(perPage) });
    if (integrationId) query.set("integration_id", integrationId);
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    return api("GET", `/events?${query}`);
  },
  get: (id) => api("GET", `/events/${encodeURIComponent(id)}`),
  /** Attempts the delivery again now only if it was not delivered (409 with the reason otherwise). */
  retry: (id, integrationId) =>
    api("POST", `/events/${encodeURIComponent(id)}/retry`, { integration_id: integrationId }),
  /** Sends the event again, whatever its delivery's state (the receiver gets it once more). */
  redeliver: (id, integrationId) =>
    api("POST", `/events/${encodeURIComponent(id)}/redeliver`, { integration_id: integrationId }),
};
