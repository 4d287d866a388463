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

/** Local time as YYYY-MM-DD HH:mm (seconds too when asked). */
export function formatTime(iso, seconds = false) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "");
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ""}`;
  return `${day} ${time}`;
}

export function timeEl(iso, seconds = false) {
  return h("time", { datetime: iso, title: iso, text: formatTime(iso, seconds) });
}

export const EVENT_TYPES = [
  ["device-provisioned", "Device provisioned"],
  ["device-decommissioned", "Device decommissioned"],
  ["device-status-changed", "Device status updated"],
];
const TRIGGERS = Object.fromEntries([
  ...EVENT_TYPES,
  ["device-inventory-changed", "Device inventory changed"],
  ["webhook-test", "Test event"],
]);
export const triggerLabel = (type) => TRIGGERS[type] ?? String(type ?? "");

export function eventTypesLabel(types) {
  if (!Array.isArray(types)) return "All events";
  if (!types.length) return "None";
  return types.map(triggerLabel).join(", ");
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

/** The delivery status for this webhook, else the first one, else null. */
export function deliveryFor(event, integrationId) {
  const all = Array.isArray(event?.delivery_statuses) ? event.delivery_statuses : [];
  return all.find((s) => s.integration_id === integrationId) ?? all[0] ?? null;
}

/** Green/red/grey dot plus the HTTP status (418 when there is no delivery status, as Mender shows). */
export function statusCell(status) {
  if (!status) {
    return h("span.status.none", {}, h("span.dot", { "aria-hidden": "true" }), h("span.sr-only", { text: "No delivery: " }), "418");
  }
  // green when delivered, red when an attempt failed (even if a retry is planned), grey before any attempt
  const kind = status.success ? "ok" : status.status_code || status.error || status.attempts ? "bad" : "wait";
  const words = { ok: "Delivered", wait: "Not attempted yet", bad: "Failed" }[kind];
  const code = status.status_code ?? status.state ?? "";
  const grey = typeof status.status_code === "number" && status.status_code >= 400;
  return h(
    `span.status.${kind}${grey ? ".grey" : ""}`,
    { title: status.error || `${words}, ${status.state ?? ""}`.replace(/, $/, "") },
    h("span.dot", { "aria-hidden": "true" }),
    h("span.sr-only", { text: `${words}: ` }),
    String(code),
  );
}

/** A polite status line or an alert; `kind` is "ok", "info" or "error". */
export function notice(kind, ...text) {
  return h(`p.notice.${kind}`, { role: kind === "error" ? "alert" : "status" }, ...text);
}

export function button(label, onClick, cls = "") {
  return h(`button.button${cls}`, { type: "button", on: { click: onClick } }, label);
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

export function confirmDialog(title, text, confirmLabel) {
  return modal(title, (close) => [
    h("p", { text }),
    h(
      "div.actions",
      {},
      button("Cancel", () => close(false)),
      button(confirmLabel, () => close(true), ".danger"),
    ),
  ]);
}
