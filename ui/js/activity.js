// The tenant's activity across all its webhooks (#/activity?device=dev-04&status=failed&page=2): the
// filters of a webhook's Activity tab, the device as the start of its id (device_prefix) and a webhook to
// choose; each event names the webhooks it went to, with each one's delivery.
import { events, integrations, SignedOut } from "./api.js";
import { append, button, detailsButton, deviceId, formatTime, h, hookName, notice, replace, statusCell, triggerLabel, waitNote } from "./dom.js";
import { apiFilters, describeFilters, emptyPage, eventCells, filterQuery, filtersForm, pager, PER_PAGE, readFilters, readPage } from "./filters.js";

const POLL_MS = 10_000;
const HERE = "#/activity";

/** The link to this page for one device's events (the start of its id: its whole id). */
export const deviceActivityHref = (device) => `${HERE}?device=${encodeURIComponent(device)}`;

export async function renderActivity(ctx) {
  document.title = "Activity · devicehooks";
  let filters = readFilters(ctx.query, true);
  let page = readPage(ctx.query);
  const body = h("div", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
  append(ctx.root, [
    h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("span", { text: "Settings" }), h("a", { href: "#/integrations", text: "Integrations" }), h("span", { text: "Activity" })),
    h("h1", { text: "Activity" }),
    h("p.help", { text: "Every event of every webhook, newest first, with its delivery to each webhook." }),
    body,
  ]);

  // the webhooks' names, for the rows and the Webhook filter; a failure replaces the view (main.js)
  const hooks = ((await integrations.list()) || []).filter((i) => i.provider === "webhook");
  if (!ctx.active) return;
  body.removeAttribute("aria-busy");
  const names = new Map(hooks.map((hook) => [hook.id, hookName(hook)]));
  const order = new Map(hooks.map((hook, n) => [hook.id, n]));
  const choices = hooks.map((hook) => [hook.id, names.get(hook.id)]);
  if (filters.webhook && !names.has(filters.webhook)) choices.push([filters.webhook, `Deleted webhook ${filters.webhook}`]);

  let timer = null;
  let running = false;
  let last = "";
  const updated = h("span.muted.small", { "aria-live": "off" });
  const table = h("div.activity-body", {}, h("p.muted", { text: "Loading…" }));
  const summary = h("p.filter-summary", { "aria-live": "polite" });
  const pages = pager("Activity pages", (step) => turn(step));
  const query = () => filterQuery(filters, page);
  const form = filtersForm(
    filters,
    (chosen) => {
      filters = chosen;
      page = 1;
      ctx.push(HERE + query());
      last = "";
      load();
    },
    {
      device: {
        label: "Device ID starts with",
        help: "Matches the start of the device ID, upper and lower case as written: dev-04 finds dev-041 and dev-042, not DEV-042.",
      },
      hooks: choices,
    },
  );
  replace(
    body,
    h(
      "section.card",
      { "aria-labelledby": "events-title" },
      h("div.section-head", {}, h("h2#events-title", { text: "Events" }), h("div.head-tools", {}, updated, button("Refresh", () => load()))),
      form,
      summary,
      table,
      pages.node,
    ),
  );

  function turn(step) {
    page = Math.max(1, page + step);
    ctx.push(HERE + query());
    last = "";
    load();
  }

  // fetched now, then every 10 s while the browser tab is visible; redrawn only when something changed
  async function load() {
    if (!ctx.active || running) return;
    clearTimeout(timer);
    if (document.hidden) {
      timer = ctx.after(POLL_MS, load);
      return;
    }
    running = true;
    try {
      const list = (await events.list(filters.webhook, page, PER_PAGE, apiFilters(filters, true))) || [];
      if (!ctx.active) return;
      updated.textContent = `Updated ${formatTime(new Date().toISOString(), true).slice(11)}`;
      const key = JSON.stringify([query(), list]);
      if (key !== last) {
        last = key;
        show(list);
      }
    } catch (err) {
      if (err instanceof SignedOut || !ctx.active) return;
      last = "";
      replace(table, notice("error", "The activity could not be loaded: ", h("span", { text: err.message })));
    } finally {
      running = false;
      if (ctx.active) timer = ctx.after(POLL_MS, load);
    }
  }

  function show(list) {
    const filtered = Object.values(filters).some(Boolean);
    pages.show(page, list.length, filtered);
    const webhook = filters.webhook ? choices.find(([id]) => id === filters.webhook)?.[1] : null;
    summary.textContent = `Showing ${describeFilters(filters, { prefix: true, webhook })}${page > 1 ? `, page ${page}` : ""}.`;
    if (!list.length) {
      replace(table, emptyPage(page, filtered, turn));
      return;
    }
    const labels = new Set();
    replace(
      table,
      h(
        "table.table.stack.activity.tenant-activity",
        {},
        h("caption.sr-only", { text: `Activity of every webhook, page ${page}${filtered ? ", filtered" : ""}` }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Time", "Device", "Event trigger", "Delivery to each webhook"].map((t) => h("th", { scope: "col", text: t })),
            h("th", { scope: "col" }, h("span.sr-only", { text: "Actions" })),
          ),
        ),
        h(
          "tbody",
          {},
          list.map((event) => {
            // in the order of the webhooks' list, a deleted webhook's last
            const statuses = (Array.isArray(event.delivery_statuses) ? event.delivery_statuses : [])
              .map((status) => [order.get(status.integration_id) ?? order.size, status])
              .sort((a, b) => a[0] - b[0])
              .map(([, status]) => status);
            // the details of this event's delivery to the webhook filtered on, else to its first webhook
            const to = statuses.find((s) => s.integration_id === filters.webhook) ?? statuses[0];
            const device = deviceId(event);
            const details = to
              ? detailsButton(labels, [triggerLabel(event.type), device ? `device ${device}` : null, formatTime(event.time, true)], event.id, () =>
                  ctx.go(`#/integrations/${encodeURIComponent(to.integration_id)}/events/${encodeURIComponent(event.id)}`),
                )
              : null;
            return h(
              "tr",
              {},
              eventCells(event),
              h(
                "td.deliveries",
                { "data-label": "Delivery to each webhook" },
                statuses.length
                  ? h("ul.deliveries", {}, statuses.map((status) => delivery(status, names.get(status.integration_id))))
                  : h("span.muted", { text: "No delivery" }),
              ),
              h("td.manage", {}, details),
            );
          }),
        ),
      ),
    );
  }

  load();
}

/** One webhook's delivery of an event: the webhook's name (a deleted webhook by its id), the state, why and when. */
function delivery(status, name) {
  return h(
    "li",
    {},
    name
      ? h("span.hook-name", { text: name })
      : h("span.hook-name.deleted", {}, "Deleted webhook ", h("span.mono", { text: status.integration_id })),
    h("span.status-stack", {}, statusCell(status), waitNote(status)),
  );
}
