// DOM helpers: every piece of API-provided text goes through textContent, never innerHTML.

/** h("tag.class#id", {attr: value, on: {click: fn}}, ...children) */
export function h(spec, attrs = {}, ...children) {
  const [, tag = "div", rest = ""] = /^([a-z0-9-]+)?(.*)$/i.exec(spec);
  const node = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") node.classList.add(part.slice(1));
    else node.id = part.slice(1);
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === "text") {
      node.textContent = String(value);
    } else if (key in node && typeof value !== "string") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

let ids = 0;
export const uid = (prefix) => `${prefix}-${++ids}`;

const pad = (n) => String(n).padStart(2, "0");

/** The one date format of every screen: local time as YYYY-MM-DD HH:mm (seconds too when asked). */
export function formatTime(iso, seconds = false) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "");
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ""}`;
  return `${day} ${time}`;
}

/** The browser's time zone, which every time shown is in: "America/New_York (UTC−05:00)". */
export function zoneText(at = new Date()) {
  const offset = -at.getTimezoneOffset();
  const sign = offset < 0 ? "−" : "+";
  const utc = `UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return name && name !== "UTC" ? `${name} (${utc})` : utc;
}

/** A <time>: the text in the one format, its tooltip the same with seconds and the zone. */
function timeNode(iso, text) {
  return h("time", { datetime: iso, title: `${formatTime(iso, true)}, ${zoneText(new Date(iso))}`, text });
}

export function timeEl(iso, seconds = false) {
  return timeNode(iso, formatTime(iso, seconds));
}

/** The same format without its date when the day is today: "12:40" (`seconds`: "12:40:05"). */
export function todayText(iso, seconds = false) {
  const full = formatTime(iso, seconds);
  const today = formatTime(new Date().toISOString()).slice(0, 10);
  return full.startsWith(today) ? full.slice(11) : full;
}

/** A time soon to come or just past: HH:mm:ss today, else the date too. */
export function soonEl(iso) {
  return timeNode(iso, todayText(iso, true));
}

/** A past time: HH:mm today, else the date too. */
export function sinceEl(iso) {
  return timeNode(iso, todayText(iso));
}

/** A URL as shown: every query-string value (and a password in it) masked, "?token=•••", so that a
 * token in a webhook's address is not on screen; the address sent and edited stays whole. */
export function maskUrl(url) {
  const text = String(url ?? "");
  let parsed;
  try {
    parsed = new URL(text);
  } catch {
    return text.replace(/([?&][^=&#]*=)[^&#]*/g, "$1•••");
  }
  const query = parsed.search ? `?${parsed.search.slice(1).split("&").map((p) => (p.includes("=") ? `${p.split("=")[0]}=•••` : p)).join("&")}` : "";
  const user = parsed.username ? `${parsed.username}${parsed.password ? ":•••" : ""}@` : "";
  return `${parsed.protocol}//${user}${parsed.host}${parsed.pathname}${query}${parsed.hash ? "#•••" : ""}`;
}

/** A webhook's name: its description, else its URL's host. */
export function hookName(hook) {
  if (hook?.description) return hook.description;
  const url = hook?.credentials?.http?.url ?? "";
  try {
    return new URL(url).host || maskUrl(url);
  } catch {
    return maskUrl(url) || "Webhook";
  }
}

export const EVENT_TYPES = [
  ["device-provisioned", "Device provisioned"],
  ["device-decommissioned", "Device decommissioned"],
  ["device-status-changed", "Device status updated"],
  ["device-inventory-changed", "Device inventory changed"],
];
/** Mender's webhook scopes, and the scope of each event type (as the API: docs/architecture.md). */
export const SCOPES = { deviceauth: "Device authentication", inventory: "Device inventory" };
export const SCOPE_OF = {
  "device-provisioned": "deviceauth",
  "device-decommissioned": "deviceauth",
  "device-status-changed": "deviceauth",
  "device-inventory-changed": "inventory",
};
const TRIGGERS = Object.fromEntries([...EVENT_TYPES, ["webhook-test", "Test event"]]);
export const triggerLabel = (type) => TRIGGERS[type] ?? String(type ?? "");

/** What a webhook receives: its event-type filter, else its scopes (none given: deviceauth). */
export function eventTypesLabel(hook) {
  const types = hook?.event_types;
  if (Array.isArray(types)) return types.length ? types.map(triggerLabel).join(", ") : "None";
  const scopes = Array.isArray(hook?.scopes) && hook.scopes.length ? hook.scopes : ["deviceauth"];
  if (Object.keys(SCOPES).every((s) => scopes.includes(s))) return "All events";
  return scopes.map((s) => `${SCOPES[s] ?? s} events`).join(", ");
}

export function enabledState(integration) {
  if (integration.enabled !== false) return h("span.state.on", { text: "Enabled" });
  return h(
    "span.state.off",
    {},
    "Disabled",
    integration.disabled_reason ? h("span.reason", { text: ` (${integration.disabled_reason})` }) : null,
  );
}

/** The webhook's circuit breaker in words, or null when it has not failed (no `circuit`). */
export function circuitState(integration, explain = false) {
  const circuit = integration?.circuit;
  if (!circuit || typeof circuit !== "object") return null;
  const failures = Number.isInteger(circuit.failures) ? circuit.failures : 0;
  const inARow = `${failures} failure${failures === 1 ? "" : "s"} in a row`;
  let badge;
  let help;
  if (circuit.state === "open") {
    // its deliveries wait, as a held delivery does: the one word "Waiting", the reason in plain words
    // (in a list row, the short form: "Waiting: failing since 12:40, next try at 12:52:05")
    const next = circuit.next_attempt ? nextTryText(circuit.next_attempt) : "soon";
    badge = h(
      "span.circuit.open",
      {},
      h("strong", { text: "Waiting" }),
      explain ? ": the webhook has been failing" : ": failing",
      circuit.since ? [" since ", sinceEl(circuit.since)] : null,
      explain ? `; devicehooks tries it again ${next}` : `, next try ${next}`,
    );
    help = `${failures ? `${inARow}. ` : ""}Its deliveries are not attempted but wait on the retry queue until then; none is lost.`;
  } else if (circuit.state === "half-open") {
    badge = h("span.circuit.half-open", {}, h("strong", { text: "Testing" }), ": one delivery decides");
    help = "The next delivery tests the webhook: if it succeeds, deliveries resume; if it fails, they wait again.";
  } else if (failures > 0) {
    badge = h("span.circuit.failing", { text: inARow });
    help = "Deliveries wait, without attempts, when a webhook keeps failing.";
  } else {
    return null;
  }
  return explain ? [badge, h("span.circuit-help", { text: help })] : badge;
}

/** Enabled/Disabled, and the circuit when it has failed. */
export function stateView(integration, explain = false) {
  return h("span.states", {}, enabledState(integration), circuitState(integration, explain));
}

const HOLD = /^(circuit open|held:|handed back:)/i;

/** A delivery waiting on the retry queue without an attempt (the circuit is open, a rate limit...). */
export const isHeld = (status) =>
  status?.state === "retrying" && (!status.attempts || HOLD.test(String(status.error ?? "")));

const isPast = (iso) => new Date(iso).getTime() < Date.now();

/** A time to come as HH:mm:ss today (else with its date), or "any moment now" once it is past: a
 * next try is never shown in the past. */
export function nextTryText(iso) {
  if (!iso || Number.isNaN(new Date(iso).getTime())) return "any moment now";
  if (isPast(iso)) return "any moment now";
  const full = formatTime(iso, true);
  const today = formatTime(new Date().toISOString()).slice(0, 10);
  return full.startsWith(today) ? `at ${full.slice(11)}` : `at ${full}`;
}

/** A next try: the time (HH:mm:ss today) while it is to come, else "any moment now". */
export function nextTryEl(iso) {
  if (!iso || isPast(iso)) return h("span.next-try", { text: "any moment now" });
  return soonEl(iso);
}

// the server's hold reasons (domain/decisions.py, dispatch/gate.py), in plain words
// (devicehooks is written in lower case, at the start of a sentence too)
const HOLD_WORDS = [
  [/^held: the webhook is on trial\b/i, "devicehooks is checking the webhook works before sending more"],
  [/^held: the webhook's rate limit is reached/i, "The webhook's rate limit is reached; devicehooks sends it as soon as the limit allows"],
  [/^held: the webhook's share of concurrent deliveries is in use/i, "Other deliveries to this webhook are being sent; this one follows them"],
  [/^held: another dispatcher is probing the webhook/i, "devicehooks is trying one delivery to see if the webhook works again; this one follows"],
  [/^handed back: /i, "devicehooks put it back in the queue to send shortly"],
];

/** Why a delivery waits, as a plain sentence (the API's full text stays in the event's details);
 * `nextAttempt`: when it is tried again, for the circuit's "tries it again at …". */
export function reasonText(error, nextAttempt = null) {
  const text = String(error ?? "").trim();
  if (/^circuit open\b/i.test(text)) {
    const probe = /next probe at (\S+)\s*$/i.exec(text)?.[1];
    const at = nextAttempt ?? probe;
    return `The webhook has been failing; devicehooks tries it again ${nextTryText(at)}`;
  }
  for (const [pattern, sentence] of HOLD_WORDS) if (pattern.test(text)) return sentence;
  const held = /^(held|handed back):\s*(.*)$/i.exec(text);
  if (held) return held[2][0] ? held[2][0].toUpperCase() + held[2].slice(1) : text;
  return text;
}

/** The delivery status for this webhook, else the first one, else null. */
export function deliveryFor(event, integrationId) {
  const all = Array.isArray(event?.delivery_statuses) ? event.delivery_statuses : [];
  return all.find((s) => s.integration_id === integrationId) ?? all[0] ?? null;
}

/** A delivery's state in one word: delivered, retrying (an attempt failed, another is planned),
 * failed (no more tries), held (waiting without an attempt) or pending. */
export function deliveryKind(status) {
  if (status.success) return "ok";
  const attempted = status.attempts > 0 || typeof status.status_code === "number";
  if (isHeld(status) && !attempted) return "held";
  if (status.state === "failed") return "bad";
  if (attempted || status.error) return status.state === "retrying" || status.state === "pending" ? "retry" : "bad";
  return "wait";
}

// retrying and held are one situation to the reader: the delivery waits for its next try
const WORDS = { ok: "Delivered", retry: "Waiting", bad: "Failed", held: "Waiting", wait: "Pending" };

/** A dot (filled: delivered or failed; a ring: still to be tried), the state in a word and the HTTP
 * status (418 when there is no delivery status, as Mender shows). */
export function statusCell(status) {
  if (!status) {
    return h("span.status.none", {}, h("span.dot", { "aria-hidden": "true" }), h("span.sr-only", { text: "No delivery: " }), "418");
  }
  const kind = deliveryKind(status);
  return h(
    `span.status.${kind}`,
    { title: status.error || null },
    h("span.dot", { "aria-hidden": "true" }),
    h("span.word", { text: WORDS[kind] }),
    kind === "held" ? h("span.sr-only", { text: ", not attempted yet" }) : null,
    typeof status.status_code === "number" ? h("span.code", { text: String(status.status_code) }) : null,
  );
}

/** Why a delivery failed or waits, and when it is next tried, else null. */
export function waitNote(status) {
  if (!status || status.success) return null;
  const kind = deliveryKind(status);
  const error = String(status.error ?? "").trim().replace(/\.$/, "");
  if (kind === "bad") return error ? h("span.wait-note", { title: status.error }, `Last attempt: ${error}. No more tries.`) : null;
  if (!status.next_attempt) return error ? h("span.wait-note", { title: status.error }, `Last attempt: ${error}.`) : null;
  const held = isHeld(status);
  const why = held ? reasonText(status.error, status.next_attempt) : error ? `Last attempt: ${error}` : "";
  const circuit = held && /^circuit open\b/i.test(String(status.error ?? "")); // its sentence has the next try
  return h(
    "span.wait-note",
    { title: status.error || null },
    why ? `${why.replace(/\.$/, "")}.` : null,
    circuit ? null : [why ? " " : null, "Next try ", nextTryEl(status.next_attempt)],
  );
}

/** The heading, the problem in plain words and a Retry button, for a view that could not load. */
export function problemView(err, retry) {
  const unreachable = err?.status === 0;
  const title = unreachable ? "The server cannot be reached" : err?.status === 404 ? "Not found" : "Something went wrong";
  const text = unreachable
    ? "The devicehooks API did not answer. Check your network connection, then try again."
    : err?.status === 404
      ? "It may have been deleted."
      : "The server could not answer this request. Try again in a moment.";
  const heading = h("h1", { tabindex: "-1", text: title });
  const node = h(
    "div.problem",
    {},
    h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("span", { text: "Settings" }), h("a", { href: "#/integrations", text: "Integrations" })),
    heading,
    h(
      "div.notice.error",
      { role: "alert" },
      h("p", { text }),
      h("p.detail", { text: `Details: ${err?.message || String(err)}${err?.requestId ? ` (request ${err.requestId})` : ""}` }),
    ),
    h("div.actions.start", {}, button("Retry", retry, ".primary"), location.hash.replace(/^#\/?/, "") !== "integrations" ? h("a.button", { href: "#/integrations", text: "Back to integrations" }) : null),
  );
  return { node, heading };
}

/** A polite status line or an alert; `kind` is "ok", "info" or "error". */
export function notice(kind, ...text) {
  return h(`p.notice.${kind}`, { role: kind === "error" ? "alert" : "status" }, ...text);
}

export function button(label, onClick, cls = "") {
  return h(`button.button${cls}`, { type: "button", on: { click: onClick } }, label);
}

/** "View details", whose accessible name also says which row (`parts`), made distinct within `names`. */
export function detailsButton(names, parts, id, onClick) {
  let name = parts.filter(Boolean).join(", ");
  if (names.has(name)) name += `, ${String(id).slice(-8)}`; // an id starts with its time: its end differs
  names.add(name);
  return h("button.button.outlined", { type: "button", on: { click: onClick } }, "View details", h("span.sr-only", { text: ` for ${name}` }));
}

/** Runs an async action with the button disabled; returns what the action returned. */
export async function busy(btn, action) {
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    btn.disabled = false;
    btn.removeAttribute("aria-busy");
  }
}

/** A modal <dialog>; resolves with the value passed to close(), or null when cancelled. */
export function modal(title, build) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const dialog = h("dialog.modal", { "aria-labelledby": titleId });
    let result = null;
    const close = (value) => {
      result = value;
      dialog.close();
    };
    dialog.append(h("h2", { id: titleId, text: title }), ...[build(close)].flat());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function confirmDialog(title, text, confirmLabel, cls = ".danger") {
  return modal(title, (close) => [
    h("p", { text }),
    h(
      "div.actions",
      {},
      button("Cancel", () => close(false)),
      button(confirmLabel, () => close(true), cls),
    ),
  ]);
}

/** Whether "Retry now" applies: the delivery waits for its next retry, or has no more tries. */
export const retryable = (status) => status?.state === "retrying" || status?.state === "failed";

/** A test delivery (POST /integrations/{id}/test): never retried or redelivered. */
export const isTestEvent = (event) => event?.test === true || event?.type === "webhook-test";

/** Asks before a delivery is attempted again now; resolves true when confirmed. */
export function confirmRetry(what) {
  return confirmDialog(
    "Retry now",
    `Attempt ${what} to this webhook again now? It is sent only if it has still not been delivered; a retry that was waiting is then dropped.`,
    "Retry now",
    ".primary",
  );
}

/** Asks before an event is sent again; resolves true when confirmed. */
export function confirmRedeliver(what) {
  return confirmDialog(
    "Redeliver",
    `Send ${what} to this webhook again? The receiver will get the event again, with the same body and webhook-id, even though it may have been delivered already.`,
    "Redeliver",
    ".primary",
  );
}

/** A refused retry or redelivery: the server's own reason, as it gives it. */
export function retryProblem(err, action = "retried") {
  if (err.status === 409) {
    return notice("error", `The delivery was not ${action}: `, h("span", { text: err.message }));
  }
  const said = h("span.detail", { text: ` (The server said: ${err.message})` });
  if (err.status === 404) return notice("error", "The event or the webhook no longer exists.", said);
  return notice("error", `The delivery could not be ${action}: `, h("span", { text: err.message }));
}

/** The device an event is about (data.id, or data.device_id for inventory events), or null. */
export function deviceId(event) {
  const id = event?.data?.id ?? event?.data?.device_id;
  return typeof id === "string" && id ? id : null;
}

/** A button that copies `text()` with the Clipboard API, and its status line (role="status"),
 * which says "Copied …" (or why not) and empties itself after a few seconds. */
export function copyButton(label, text, what, which = "") {
  const said = h("span.copy-note", { role: "status" });
  let timer = null;
  const say = (message, kind) => {
    clearTimeout(timer);
    said.className = `copy-note ${kind}`;
    said.textContent = message;
    timer = setTimeout(() => (said.textContent = ""), 5000);
  };
  const btn = button([label, which ? h("span.sr-only", { text: ` ${which}` }) : null], async () => {
    try {
      await navigator.clipboard.writeText(text());
      say(`Copied ${what} to the clipboard.`, "ok");
    } catch {
      say("The browser did not allow copying: select the text instead.", "error");
    }
  }, ".copy");
  return h("span.copy-tool", {}, btn, said);
}
