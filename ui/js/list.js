// Settings → Integrations: the tenant's webhooks.
import { integrations } from "./api.js";
import { append, button, detailsButton, eventTypesLabel, h, notice, replace, stateView } from "./dom.js";

export async function renderList(ctx) {
  document.title = "Integrations · devicehooks";
  const body = h("div.list-body", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
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
          ["Description", "Event types", "State"].map((t) => h("th", { scope: "col", text: t })),
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
