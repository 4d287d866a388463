// Activity filters, their place in the address, the pages and an event's first cells: shared by a
// webhook's Activity tab (detail.js) and the tenant's Activity page across webhooks (activity.js).
import { button, deviceId, EVENT_TYPES, formatTime, h, timeEl, triggerLabel } from "./dom.js";
import { field } from "./form.js";

export const PER_PAGE = 20;

export const STATES = [
  ["pending", "Pending"],
  ["retrying", "Waiting"],
  ["delivered", "Delivered"],
  ["failed", "Failed"],
  ["skipped", "Skipped"],
];
const TRIGGER_TYPES = [...EVENT_TYPES.map(([type]) => type), "webhook-test"];

/** The filters the address holds (unknown values dropped); `webhook` only where there is a choice of webhook. */
export function readFilters(query, withWebhook = false) {
  const valid = {
    device: (v) => v.trim().length > 0,
    status: (v) => STATES.some(([s]) => s === v),
    type: (v) => TRIGGER_TYPES.includes(v),
    from: (v) => !Number.isNaN(Date.parse(v)),
    to: (v) => !Number.isNaN(Date.parse(v)),
  };
  if (withWebhook) valid.webhook = (v) => /^[0-9a-f-]{36}$/i.test(v);
  const found = {};
  for (const [key, ok] of Object.entries(valid)) {
    const v = query.get(key);
    if (v && ok(v)) found[key] = key === "device" ? v.trim() : v;
  }
  return found;
}

/** The page the address holds, 1 when none. */
export const readPage = (query) => Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);

/** The address's "?…" for these filters and this page; times keep their colons: ?from=2026-11-29T09:00:00Z. */
export function filterQuery(filters, page) {
  const pairs = Object.entries(filters).filter(([, v]) => v);
  if (page > 1) pairs.push(["page", String(page)]);
  const text = pairs.map(([k, v]) => `${k}=${encodeURIComponent(v).replace(/%3A/gi, ":")}`).join("&");
  return text ? `?${text}` : "";
}

/** GET /events's query parameters for these filters (from <= time < to, RFC 3339); `prefix`: the device
 * filter is the start of the id (device_prefix), else the whole id (device_id). */
export function apiFilters(f, prefix = false) {
  return { [prefix ? "device_prefix" : "device_id"]: f.device, status: f.status, type: f.type, from: f.from, to: f.to };
}

/** The filters in words: "failed Device provisioned events of device x, from … until …". */
export function describeFilters(f, { prefix = false, webhook = null } = {}) {
  const words = [
    f.status ? STATES.find(([s]) => s === f.status)[1].toLowerCase() : "all",
    f.type ? `${triggerLabel(f.type)}` : null,
    "events",
    f.device ? (prefix ? `of devices whose ID starts with ${f.device}` : `of device ${f.device}`) : null,
    f.webhook ? `to ${webhook || "the webhook chosen"}` : null,
    f.from ? `from ${formatTime(f.from)}` : null,
    f.to ? `until ${formatTime(f.to)}` : null,
  ];
  return words.filter(Boolean).join(" ");
}

/** The filter form (role="search"): device, status, trigger, time range, and a webhook when `hooks`
 * ([id, name] pairs) are given; `apply(filters)` on submit. `device`: the device field's label and help. */
export function filtersForm(current, apply, { device: deviceText = { label: "Device ID" }, hooks = null } = {}) {
  const choose = (name, options, value) =>
    h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === (value || ""), text: label })));
  const device = field({
    id: "filter-device",
    label: deviceText.label,
    help: deviceText.help,
    input: h("input", { type: "search", name: "device", maxlength: "256", autocomplete: "off", spellcheck: "false", class: "mono", value: current.device || "" }),
  });
  const webhook = hooks
    ? field({ id: "filter-webhook", label: "Webhook", input: choose("webhook", [["", "Any webhook"], ...hooks], current.webhook) })
    : null;
  const status = field({ id: "filter-status", label: "Status", input: choose("status", [["", "Any status"], ...STATES], current.status) });
  const type = field({
    id: "filter-type",
    label: "Event trigger",
    input: choose("type", [["", "Any trigger"], ...TRIGGER_TYPES.map((t) => [t, triggerLabel(t)])], current.type),
  });
  const fromInput = h("input", { type: "datetime-local", name: "from", value: current.from ? localInput(new Date(current.from)) : "" });
  const toInput = h("input", { type: "datetime-local", name: "to", value: current.to ? localInput(new Date(current.to)) : "" });
  const from = field({ id: "filter-from", label: "From", input: fromInput, validate: (v) => (!v || parseLocal(v) ? "" : "Enter a date and time, or leave it empty") });
  const to = field({
    id: "filter-to",
    label: "Until",
    input: toInput,
    validate: (v) => {
      if (!v) return "";
      const end = parseLocal(v);
      if (!end) return "Enter a date and time, or leave it empty";
      const start = parseLocal(fromInput.value);
      return start && end <= start ? "The end has to be after the start" : "";
    },
  });
  const fields = [device, webhook, status, type, from, to].filter(Boolean);
  const clear = button("Clear filters", () => {
    for (const f of fields) {
      f.input.value = "";
      f.setError("");
    }
    apply({});
  });
  const form = h(
    "form.filters",
    {
      role: "search",
      "aria-label": "Filter activity",
      novalidate: true,
      on: {
        submit: (event) => {
          event.preventDefault();
          const ok = [from.check(), to.check()];
          if (!ok[0] || !ok[1]) {
            (ok[0] ? toInput : fromInput).focus();
            return;
          }
          const chosen = {
            device: device.input.value.trim(),
            webhook: webhook ? webhook.input.value : "",
            status: status.input.value,
            type: type.input.value,
            from: fromInput.value ? rfc3339(parseLocal(fromInput.value)) : "",
            to: toInput.value ? rfc3339(parseLocal(toInput.value)) : "",
          };
          apply(Object.fromEntries(Object.entries(chosen).filter(([, v]) => v)));
        },
      },
    },
    fields.map((f) => f.node),
    h(
      "div.actions.start",
      {},
      h("button.button.primary", { type: "submit", text: "Apply filters" }),
      clear,
      h("span.filter-help.help", { text: "Times are your local time: events from the start, before the end." }),
    ),
  );
  // folded away on a phone until asked for (or while filters are on)
  const open = Object.values(current).some(Boolean) || !matchMedia("(max-width: 680px)").matches;
  return h("details.filter-box", { open }, h("summary", { text: "Filters" }), form);
}

/** Previous page / Next page and, between them, "Page 8 · events 141–160 · more on the next page";
 * `turn(step)` goes back (-1) or on (1). */
export function pager(label, turn) {
  const prev = button("Previous page", () => turn(-1));
  const next = button("Next page", () => turn(1));
  const text = h("span.page", { "aria-live": "polite" });
  const node = h("nav.pager", { "aria-label": label, hidden: true }, prev, text, next);
  /** Where `count` events shown on `page` stand ("Next" once a full page came back). */
  const show = (page, count, filtered) => {
    const more = count >= PER_PAGE;
    prev.disabled = page <= 1;
    next.disabled = !more;
    node.hidden = page <= 1 && !more;
    const first = (page - 1) * PER_PAGE + 1;
    text.textContent = [
      `Page ${page}`,
      count ? `events ${first}–${first + count - 1}` : "no events",
      more ? "more on the next page" : page > 1 ? "last page" : "",
      filtered ? "filtered" : "",
    ].filter(Boolean).join(" · ");
  };
  return { node, show };
}

/** What an empty page says: none on this page (and the way back to the first), none matching, or none yet. */
export function emptyPage(page, filtered, turn) {
  return h(
    "p.empty",
    {},
    page > 1 ? `No events on page ${page}. ` : filtered ? "No event matches these filters." : "No webhook activity yet.",
    page > 1 ? button("Go to the first page", () => turn(1 - page)) : null,
  );
}

/** An event's first cells in a list: its time, its device (cut with "…", whole in its tooltip) and its trigger. */
export function eventCells(event) {
  const device = deviceId(event);
  return [
    h("td.when", { "data-label": "Time" }, timeEl(event.time, true)),
    h(device ? "td.device.mono" : "td.device.mono.none", { "data-label": "Device", text: device ?? "—", title: device ?? undefined }),
    h("td.trigger", { "data-label": "Event trigger", text: triggerLabel(event.type) }),
  ];
}

const pad2 = (n) => String(n).padStart(2, "0");
/** A Date as a datetime-local input's value (local time, to the minute). */
export function localInput(d) {
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}
/** A datetime-local input's value (local time) as a Date, or null. */
export function parseLocal(value) {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(value || "")) return null;
  const d = new Date(value); // no zone: local time
  return Number.isNaN(d.getTime()) ? null : d;
}
/** RFC 3339 in UTC, to the second. */
export const rfc3339 = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
