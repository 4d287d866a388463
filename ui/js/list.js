// Settings → Integrations: the tenant's webhooks, searchable, sortable and paged; health fetched for
// the rows shown only; fetched again every 30 s while the browser tab is visible.
import { integrations, SignedOut } from "./api.js";
import { append, button, detailsButton, eventTypesLabel, h, hookName, maskUrl, notice, replace, stateView, todayText } from "./dom.js";
import { healthCell } from "./health.js";

const PER_PAGE = 20;
const POLL_MS = 30_000;
const SORTS = [
  ["name", "Name (A–Z)"],
  ["url", "URL (A–Z)"],
  ["state", "State (problems first)"],
];
const urlOf = (hook) => hook.credentials?.http?.url ?? "";
const shownUrl = (hook) => maskUrl(urlOf(hook));
// disabled first, then waiting (circuit open), testing, failures in a row, then the rest
const trouble = (hook) =>
  hook.enabled === false ? 0 : hook.circuit?.state === "open" ? 1 : hook.circuit?.state === "half-open" ? 2 : hook.circuit?.failures ? 3 : 4;
const byName = (a, b) => hookName(a).localeCompare(hookName(b), "en", { sensitivity: "base" }) || a.id.localeCompare(b.id);
const ORDER = {
  name: byName,
  url: (a, b) => shownUrl(a).localeCompare(shownUrl(b), "en") || byName(a, b),
  state: (a, b) => trouble(a) - trouble(b) || byName(a, b),
};

// id -> [the health last fetched (null: not available), when]: kept across views, so that Back to the
// list does not ask again for what it asked less than 30 s ago
const healths = new Map();
const fresh = (id) => healths.has(id) && Date.now() - healths.get(id)[1] < POLL_MS;
const asking = new Set(); // ids whose health is being fetched: never asked twice at once

export async function renderList(ctx) {
  document.title = "Integrations · devicehooks";
  let search = (ctx.query.get("q") || "").trim();
  let sort = ORDER[ctx.query.get("sort")] ? ctx.query.get("sort") : "name";
  let page = Math.max(1, Number.parseInt(ctx.query.get("page") || "1", 10) || 1);
  let hooks = null; // the tenant's webhooks as last fetched
  let shownKey = ""; // what the table shows, so that it is redrawn only when that changes
  const cells = new Map(); // id -> the health cell of a row shown
  let timer = null;

  const body = h("div.list-body", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
  const updated = h("span.muted.small.updated");
  const count = h("p.list-count", { "aria-live": "polite" });
  const prev = button("Previous page", () => turn(page - 1));
  const next = button("Next page", () => turn(page + 1));
  const pageLabel = h("span.page");
  const pager = h("nav.pager", { "aria-label": "Webhook pages", hidden: true }, prev, pageLabel, next);
  const searchInput = h("input#hook-search", {
    type: "search",
    name: "q",
    value: search,
    autocomplete: "off",
    spellcheck: "false",
    on: {
      input: () => {
        search = searchInput.value.trim();
        page = 1;
        ctx.note(`#/integrations${address()}`);
        show();
      },
    },
  });
  const sortSelect = h(
    "select#hook-sort",
    {
      name: "sort",
      on: {
        change: () => {
          sort = sortSelect.value;
          page = 1;
          ctx.push(`#/integrations${address()}`);
          show();
        },
      },
    },
    SORTS.map(([value, label]) => h("option", { value, selected: value === sort, text: label })),
  );
  const tools = h(
    "form.list-tools",
    { role: "search", "aria-label": "Webhooks", hidden: true, on: { submit: (event) => event.preventDefault() } },
    h("div.field", {}, h("label", { for: "hook-search", text: "Search" }), searchInput),
    h("div.field", {}, h("label", { for: "hook-sort", text: "Sort by" }), sortSelect),
  );
  // the service's static egress addresses, when it has some (StaticEgressIps), for receivers' allow-lists
  const egress = h("div.egress");
  integrations.egress().then(
    (answer) => {
      const addresses = (answer && answer.addresses) || [];
      if (!ctx.active || !addresses.length) return;
      const codes = addresses.flatMap((address, n) => [n ? ", " : "", h("code", { text: address })]);
      replace(egress, h("p.help#egress-addresses", {}, "Requests come from these addresses, for your firewall's allow-list: ", ...codes, "."));
    },
    () => {}, // not shown when it cannot be read: the list matters more
  );
  append(ctx.root, [
    h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("span", { text: "Settings" }), h("span", { text: "Integrations" })),
    h("h1", { text: "Integrations" }),
    ctx.flash ? notice(ctx.flash[0], ctx.flash[1]) : null,
    h(
      "section.card",
      { "aria-labelledby": "webhooks-title" },
      h(
        "div.section-head",
        {},
        h("h2#webhooks-title", { text: "Webhooks" }),
        h("div.head-tools", {}, updated, button("Refresh", () => load(true)), button("Add webhook", () => ctx.go("#/integrations/new"), ".primary")),
      ),
      h("p.help", {
        text: "Webhooks send signed HTTP requests to your systems when devices are provisioned, decommissioned or change status.",
      }),
      egress,
      tools,
      count,
      body,
      pager,
    ),
  ]);

  /** The list's state for the address: #/integrations?q=…&sort=url&page=2 */
  function address() {
    const query = new URLSearchParams();
    if (search) query.set("q", search);
    if (sort !== "name") query.set("sort", sort);
    if (page > 1) query.set("page", String(page));
    const text = query.toString();
    return text ? `?${text}` : "";
  }

  function turn(to) {
    page = to;
    ctx.push(`#/integrations${address()}`);
    show();
  }

  /** A webhook's health into its cell, if the row is still shown. */
  function fill(id) {
    const cell = cells.get(id);
    if (!cell) return;
    cell.removeAttribute("aria-busy");
    const [health] = healths.get(id);
    replace(cell, health ? healthCell(health) : h("span.muted", { text: "Not available" }));
  }

  /** Fetches the health of the rows shown (`again`: even when fetched less than 30 s ago), four at
   * a time; a row no longer shown (another page, a search) is not asked for. */
  async function fetchHealth(ids, again) {
    const wanted = ids.filter((id) => (again || !fresh(id)) && !asking.has(id));
    const work = async () => {
      for (let id = wanted.shift(); id !== undefined; id = wanted.shift()) {
        if (!ctx.active) return;
        if (!cells.has(id) || asking.has(id)) continue;
        asking.add(id);
        try {
          healths.set(id, [await integrations.health(id), Date.now()]);
        } catch (err) {
          if (err instanceof SignedOut || !ctx.active) return;
          if (!healths.has(id)) healths.set(id, [null, Date.now()]);
        } finally {
          asking.delete(id);
        }
        if (ctx.active) fill(id);
      }
    };
    await Promise.all([work(), work(), work(), work()]);
  }

  /** The rows the search, sort and page select, drawn when they changed; their health fetched. */
  function show(again = false) {
    if (!hooks) return;
    const needle = search.toLowerCase();
    const found = hooks
      // the URL as shown (masked): a search never tells what a hidden token holds
      .filter((hook) => !needle || [hook.description, shownUrl(hook), hook.id].some((t) => String(t ?? "").toLowerCase().includes(needle)))
      .sort(ORDER[sort]);
    const pages = Math.max(1, Math.ceil(found.length / PER_PAGE));
    page = Math.min(page, pages);
    const rows = found.slice((page - 1) * PER_PAGE, page * PER_PAGE);
    const first = (page - 1) * PER_PAGE + 1;
    count.textContent = !hooks.length
      ? ""
      : found.length
        ? `${search ? `${found.length} of ${hooks.length} webhooks match` : `${hooks.length} ${hooks.length === 1 ? "webhook" : "webhooks"}`}${pages > 1 ? `, ${first}–${first + rows.length - 1} shown` : ""}.`
        : `No webhook matches “${search}”.`;
    pager.hidden = pages <= 1;
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    pageLabel.textContent = `Page ${page} of ${pages}`;
    const key = JSON.stringify([rows, hooks.length]);
    if (key !== shownKey) {
      shownKey = key;
      draw(rows);
    }
    fetchHealth(rows.map((hook) => hook.id), again);
  }

  function draw(rows) {
    const focused = document.activeElement?.dataset?.row; // kept across a redraw
    cells.clear();
    tools.hidden = !hooks.length;
    if (!hooks.length) {
      replace(body, h("p.empty", { text: "No webhooks yet. Add one to receive device lifecycle events." }));
      return;
    }
    const open = (hook) => ctx.go(`#/integrations/${encodeURIComponent(hook.id)}`);
    const names = new Set();
    const healthCellFor = (hook) => {
      const cell = h("td.health", { "data-label": "Last 24 hours", "aria-busy": "true" }, h("span.muted", { text: "Loading…" }));
      cells.set(hook.id, cell);
      if (healths.has(hook.id)) fill(hook.id);
      return cell;
    };
    replace(
      body,
      rows.length
        ? h(
            "table.table.stack",
            {},
            h("caption.sr-only", { text: `Webhooks, page ${page}` }),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th.col-url", { scope: "col", text: "URL" }),
                ["Description", "Event types", "State", "Last 24 hours"].map((t) => h("th", { scope: "col", text: t })),
                h("th", { scope: "col" }, h("span.sr-only", { text: "Manage" })),
              ),
            ),
            h(
              "tbody",
              {},
              rows.map((hook) => {
                const details = detailsButton(names, [hookName(hook)], hook.id, () => open(hook));
                details.dataset.row = hook.id;
                return h(
                  "tr",
                  {},
                  h("td.url", { "data-label": "URL", text: shownUrl(hook) }),
                  h("td", { "data-label": "Description", text: hook.description || "—" }),
                  h("td", { "data-label": "Event types", text: eventTypesLabel(hook) }),
                  h("td", { "data-label": "State" }, stateView(hook)),
                  healthCellFor(hook),
                  h("td.manage", {}, details),
                );
              }),
            ),
          )
        : null,
    );
    if (focused) body.querySelector(`[data-row="${CSS.escape(focused)}"]`)?.focus();
  }

  /** The list, and the health of the rows shown (`again`: even if fetched less than 30 s ago); then
   * again every 30 s while the tab is visible. */
  async function load(again = false) {
    clearTimeout(timer);
    if (!ctx.active) return;
    if (document.hidden && hooks) return; // nobody is looking: fetched again when the tab is visible
    try {
      const all = await integrations.list();
      if (!ctx.active) return;
      hooks = (all || []).filter((i) => i.provider === "webhook");
      const now = new Date().toISOString();
      replace(updated, "Updated ", h("time", { datetime: now, text: todayText(now, true) }));
      body.removeAttribute("aria-busy");
      show(again);
    } catch (err) {
      if (!hooks) throw err; // the first load: the view says what went wrong, with Retry
      if (err instanceof SignedOut || !ctx.active) return;
      replace(updated, h("span.warn-text", { text: `Not updated: ${err.message}` }));
    } finally {
      if (ctx.active && hooks) timer = ctx.after(POLL_MS, () => load(true).catch(() => {}));
    }
  }
  // back to a visible tab after a while: fetched at once rather than at the next turn
  const visible = () => {
    const at = Date.parse(updated.querySelector("time")?.getAttribute("datetime") ?? "");
    if (!document.hidden && ctx.active && !(Date.now() - at < POLL_MS)) load(true).catch(() => {});
  };
  document.addEventListener("visibilitychange", visible);
  ctx.onStop(() => document.removeEventListener("visibilitychange", visible));
  await load();
}
