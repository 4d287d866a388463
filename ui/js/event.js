// Event details: what was sent (the exact payload) and every delivery attempt; redelivery.
import { events, SignedOut } from "./api.js";
import {
  append,
  busy,
  button,
  deliveryFor,
  h,
  isHeld,
  notice,
  reasonText,
  replace,
  retryable,
  retryProblem,
  confirmRetry,
  statusCell,
  timeEl,
  triggerLabel,
} from "./dom.js";

const IN_PROGRESS = new Set(["pending", "retrying"]);

export async function renderEvent(ctx, integrationId, eventId) {
  document.title = "Event details · devicehooks";
  const back = `#/integrations/${encodeURIComponent(integrationId)}/activity`;
  const body = h("div", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
  const outcome = h("div.outcome");
  append(ctx.root, [
    h(
      "nav.crumbs",
      { "aria-label": "Breadcrumb" },
      h("span", { text: "Settings" }),
      h("a", { href: "#/integrations", text: "Integrations" }),
      h("a", { href: back, text: "Webhook details" }),
    ),
    h("p.back", {}, h("a", { href: back, text: "← Back to webhook" })),
    h("h1", { text: "Event details" }),
    outcome,
    body,
  ]);

  let timer = null;
  // after "Retry now": [attempts before, stop watching at], until the new attempt is recorded
  let watching = null;
  async function load() {
    clearTimeout(timer);
    const event = await events.get(eventId);
    if (!ctx.active) return;
    body.removeAttribute("aria-busy");
    const status = deliveryFor(event, integrationId);
    if (watching && ((status?.attempts ?? 0) > watching[0] && status?.state !== "pending" || Date.now() > watching[1])) {
      watching = null;
    }
    const hadFocus = document.activeElement?.classList?.contains("redeliver");
    replace(body, ...view(event, status));
    if (hadFocus) body.querySelector(".redeliver")?.focus();
    clearTimeout(timer); // one refresh loop, even when two loads overlapped
    if ((status && IN_PROGRESS.has(status.state)) || watching) timer = ctx.after(2000, () => load().catch(ctx.fail));
  }

  function view(event, status) {
    const payload = JSON.stringify(event.data ?? null, null, 2);
    const copy = button("Copy payload", async () => {
      try {
        await navigator.clipboard.writeText(payload);
        replace(outcome, notice("ok", "The payload was copied."));
      } catch {
        replace(outcome, notice("error", "The browser did not allow copying: select the text instead."));
      }
    });
    // one action: "Retry now" for a delivery waiting for its retry or failed, "Redeliver" otherwise
    const now = retryable(status);
    const label = now ? "Retry now" : "Redeliver";
    const redeliver = button(label, async () => {
      if (!(await confirmRetry("this event", label))) return;
      await busy(redeliver, async () => {
        try {
          await events.redeliver(event.id, integrationId);
          if (!ctx.active) return;
          watching = [status?.attempts ?? 0, Date.now() + 60_000];
          replace(outcome, notice("ok", now ? "The delivery is being attempted again now." : "The event was queued for redelivery."));
          clearTimeout(timer);
          timer = ctx.after(1000, () => load().catch(ctx.fail));
        } catch (err) {
          if (err instanceof SignedOut || !ctx.active) return;
          replace(outcome, retryProblem(err));
        }
      });
    }, ".redeliver");
    const attempts = Array.isArray(status?.attempt_log) ? status.attempt_log : [];
    return [
      h(
        "section.card",
        { "aria-labelledby": "summary-title" },
        h("h2#summary-title.sr-only", { text: "Summary" }),
        h(
          "dl.props",
          {},
          h("dt", { text: "Time" }),
          h("dd", {}, timeEl(event.time, true)),
          h("dt", { text: "Event trigger" }),
          h("dd", { text: triggerLabel(event.type) }),
          h("dt", { text: "Status" }),
          h("dd", {}, statusCell(status)),
          status?.error ? reasonRow(status) : null,
          status?.next_attempt ? [h("dt", { text: "Next attempt" }), h("dd", {}, timeEl(status.next_attempt, true))] : null,
          h("dt", { text: "Event ID" }),
          h("dd.mono", { text: event.id }),
        ),
        h("div.actions.start", {}, redeliver),
      ),
      h(
        "section.card",
        { "aria-labelledby": "payload-title" },
        h("div.section-head", {}, h("h2#payload-title", { text: "Payload" }), copy),
        // focusable, so that the keyboard can scroll it
        h("pre.payload", { tabindex: "0", role: "region", "aria-label": "Payload (JSON)" }, h("code", { text: payload })),
      ),
      h(
        "section.card",
        { "aria-labelledby": "attempts-title" },
        h("h2#attempts-title", { text: "Delivery attempts" }),
        attempts.length ? attemptTable(attempts) : h("p.empty", { text: "No delivery attempt yet." }),
      ),
    ];
  }

  await load();
}

/** A held delivery's reason (not attempted, so not an error), or the last attempt's error. */
function reasonRow(status) {
  if (!isHeld(status)) return [h("dt", { text: "Error" }), h("dd", { text: status.error })];
  const summary = reasonText(status.error);
  return [
    h("dt", { text: "Held because" }),
    h(
      "dd",
      {},
      summary,
      summary !== status.error ? h("span.muted.small.raw-reason", { text: status.error }) : null,
    ),
  ];
}

function attemptTable(attempts) {
  return h(
    "table.table.stack",
    {},
    h(
      "thead",
      {},
      h("tr", {}, ["Attempt", "Time", "Duration", "Result", "Response"].map((t) => h("th", { scope: "col", text: t }))),
    ),
    h(
      "tbody",
      {},
      attempts.map((a) =>
        h(
          "tr",
          {},
          h("td", { "data-label": "Attempt", text: String(a.attempt ?? "") }),
          h("td", { "data-label": "Time" }, timeEl(a.time, true)),
          h("td", { "data-label": "Duration", text: typeof a.duration_ms === "number" ? `${a.duration_ms} ms` : "—" }),
          h("td", { "data-label": "Result", text: [a.status_code ? `HTTP ${a.status_code}` : "", a.error || ""].filter(Boolean).join(" · ") || "—" }),
          h("td", { "data-label": "Response" }, a.response_body
            ? h("pre.response", { tabindex: "0", role: "region", "aria-label": `Response body of attempt ${a.attempt ?? ""}`, text: a.response_body })
            : "—"),
        ),
      ),
    ),
  );
}
