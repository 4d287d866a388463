// Settings → Integrations: the tenant's webhooks.
import { integrations } from "./api.js";
import { append, button, detailsButton, eventTypesLabel, h, notice, replace, stateView } from "./dom.js";
import { healthCell } from "./health.js";

export async function renderList(ctx) {
  document.title = "Integrations · devicehooks";
  const body = h("div.list-body", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
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
        button("Add webhook", () => ctx.go("#/integrations/new"), ".primary"),
      ),
      h("p.help", {
        text: "Webhooks send signed HTTP requests to your systems when devices are provisioned, decommissioned or change status.",
      }),
      egress,
      body,
    ),
  ]);

  const all = await integrations.list();
  if (!ctx.active) return;
  body.removeAttribute("aria-busy");
  const hooks = (all || []).filter((i) => i.provider === "webhook");
  if (!hooks.length) {
    replace(body, h("p.empty", { text: "No webhooks yet. Add one to receive device lifecycle events." }));
    return;
  }
  // each webhook's health, filled in as it arrives (a webhook without one says so)
  const health = (hook) => {
    const cell = h("td.health", { "data-label": "Last 24 hours", "aria-busy": "true" }, h("span.muted", { text: "Loading…" }));
    integrations.health(hook.id).then(
      (answer) => ctx.active && replace(cell, healthCell(answer)),
      () => ctx.active && replace(cell, h("span.muted", { text: "Not available" })),
    ).finally(() => cell.removeAttribute("aria-busy"));
    return cell;
  };
  const open = (hook) => ctx.go(`#/integrations/${encodeURIComponent(hook.id)}`);
  const names = new Set();
  replace(
    body,
    h(
      "table.table.stack",
      {},
      h("caption.sr-only", { text: "Webhooks" }),
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
        hooks.map((hook) =>
          h(
            "tr",
            {},
            h("td.url", { "data-label": "URL", text: hook.credentials?.http?.url ?? "" }),
            h("td", { "data-label": "Description", text: hook.description || "—" }),
            h("td", { "data-label": "Event types", text: eventTypesLabel(hook) }),
            h("td", { "data-label": "State" }, stateView(hook)),
            health(hook),
            h(
              "td.manage",
              {},
              detailsButton(names, [hook.description || hook.credentials?.http?.url], hook.id, () => open(hook)),
            ),
          ),
        ),
      ),
    ),
  );
}
