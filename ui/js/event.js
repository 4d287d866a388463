// Event details: what was sent (the exact payload) and every delivery attempt; redelivery.
import { deviceActivityHref } from "./activity.js";
import { events, integrations, SignedOut } from "./api.js";
import {
  append,
  busy,
  button,
  deliveryFor,
  deviceId,
  h,
  hookName,
  isHeld,
  isTestEvent,
  nextTryText,
  notice,
  reasonText,
  replace,
  retryable,
  retryProblem,
  confirmRedeliver,
  confirmRetry,
  copyButton,
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
  const crumb = h("a", { href: back, text: "Webhook details" }); // then the webhook's name
  append(ctx.root, [
    h(
      "nav.crumbs",
      { "aria-label": "Breadcrumb" },
      h("span", { text: "Settings" }),
      h("a", { href: "#/integrations", text: "Integrations" }),
      crumb,
    ),
    h("p.back", {}, h("a", { href: back, text: "← Back to webhook" })),
    h("h1", { text: "Event details" }),
    outcome,
    body,
  ]);

  let timer = null;
  // after "Retry now": [attempts before, stop watching at], until the new attempt is recorded
  let watching = null;
  let webhook = null;
  let hookReadAt = 0;
  async function load() {
    clearTimeout(timer);
    // the webhook too (again after 10 s): Retry now is not offered where it cannot work (disabled),
    // and says when a failing one (its circuit open) tries
    const fresh = Date.now() - hookReadAt < 10_000;
    const [event, hook] = await Promise.all([
      events.get(eventId),
      fresh
        ? webhook
        : integrations.get(integrationId).catch((err) => {
            if (err instanceof SignedOut) throw err;
            return null;
          }),
    ]);
    if (!ctx.active) return;
    if (!fresh) [webhook, hookReadAt] = [hook, Date.now()];
    if (hook) crumb.textContent = hookName(hook);
    body.removeAttribute("aria-busy");
    const status = deliveryFor(event, integrationId);
    if (watching && ((status?.attempts ?? 0) > watching[0] && status?.state !== "pending" || Date.now() > watching[1])) {
      watching = null;
    }
    const hadFocus = document.activeElement?.classList?.contains("redeliver");
    // a refresh keeps the attempts that were opened (by default the last one is)
    const opened = body.querySelector("details.attempt") ? new Set([...body.querySelectorAll("details.attempt[open]")].map((d) => d.dataset.n)) : null;
    replace(body, ...view(event, status, opened, hook));
    if (hadFocus) body.querySelector(".redeliver")?.focus();
    clearTimeout(timer); // one refresh loop, even when two loads overlapped
    if ((status && IN_PROGRESS.has(status.state)) || watching) timer = ctx.after(2000, () => load().catch(ctx.fail));
  }

  let formatted = false; // the body shown with line breaks added (the copy is always as sent)
  function view(event, status, opened, hook) {
    const exact = typeof event.body === "string"; // older servers return only `data`
    const sent = exact ? event.body : JSON.stringify(event.data ?? null, null, 2);
    const pretty = () => {
      try {
        return JSON.stringify(JSON.parse(sent), null, 2);
      } catch {
        return sent;
      }
    };
    const code = h("code", { text: formatted ? pretty() : sent });
    const format = h("input#body-formatted", {
      type: "checkbox",
      checked: formatted,
      on: {
        change: () => {
          formatted = format.checked;
          code.textContent = formatted ? pretty() : sent;
        },
      },
    });
    // one action: "Retry now" (POST …/retry: only if it was still not delivered) for a delivery waiting
    // for its retry or failed, "Redeliver" (POST …/redeliver: sent again, whatever) otherwise; none for a test
    const now = retryable(status);
    const disabled = hook?.enabled === false;
    const redeliver = isTestEvent(event) || disabled
      ? null
      : button(now ? "Retry now" : "Redeliver", async () => {
          if (!(await (now ? confirmRetry("this event") : confirmRedeliver("this event")))) return;
          await busy(redeliver, async () => {
            try {
              await (now ? events.retry : events.redeliver)(event.id, integrationId);
              if (!ctx.active) return;
              watching = [status?.attempts ?? 0, Date.now() + 60_000];
              replace(outcome, notice("ok", queuedText(now, hook)));
            } catch (err) {
              if (err instanceof SignedOut || !ctx.active) return;
              replace(outcome, retryProblem(err, now ? "retried" : "redelivered"));
            }
            clearTimeout(timer); // either way, show the delivery as it stands now
            timer = ctx.after(1000, () => load().catch(ctx.fail));
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
          deviceRow(deviceId(event)),
          h("dt", { text: "Status" }),
          h("dd", {}, statusCell(status)),
          status?.error ? reasonRow(status) : null,
          status?.next_attempt
            ? [h("dt", { text: "Next attempt" }), h("dd", {}, new Date(status.next_attempt).getTime() < Date.now() ? "Any moment now" : timeEl(status.next_attempt, true))]
            : null,
          h("dt", { text: "Event ID" }),
          h("dd.mono", { text: event.id }),
        ),
        redeliver ? h("div.actions.start", {}, redeliver) : null,
        disabled && !isTestEvent(event)
          ? h("p.help.disabled-note", { text: "The webhook is disabled, so this event cannot be sent to it: enable it on the Settings tab first." })
          : null,
      ),
      h(
        "section.card",
        { "aria-labelledby": "payload-title" },
        h("div.section-head", {}, h("h2#payload-title", { text: "Request body" }), copyButton("Copy body", () => sent, "the body")),
        h(
          "p.help",
          {},
          exact
            ? `Exactly as sent: ${new TextEncoder().encode(sent).length.toLocaleString("en")} bytes of JSON, the same for every attempt.`
            : "The server did not return the body as sent: this is its data, formatted.",
        ),
        exact ? h("p.check", {}, format, h("label", { for: "body-formatted", text: "Show formatted (line breaks added; Copy body copies the exact bytes)" })) : null,
        // focusable, so that the keyboard can scroll it
        h("pre.payload", { tabindex: "0", role: "region", "aria-label": "Request body (JSON)" }, code),
      ),
      h(
        "section.card",
        { "aria-labelledby": "attempts-title" },
        h("h2#attempts-title", { text: "Delivery attempts" }),
        status?.attempts_not_kept > 0
          ? h("p.help", {
              text: `${status.attempts_not_kept.toLocaleString("en")} earlier ${status.attempts_not_kept === 1 ? "attempt is" : "attempts are"} not shown: the record keeps the first attempt and the latest ones.`,
            })
          : null,
        attempts.length ? [attemptTable(attempts), attempts.map((a, n) => attemptDetail(a, opened ? opened.has(String(a.attempt)) : n === attempts.length - 1))] : h("p.empty", { text: "No delivery attempt yet." }),
      ),
    ];
  }

  await load();
}

/** What a retry or redelivery that was accepted does: now, or at a failing webhook's next try. */
function queuedText(now, hook) {
  const circuit = hook?.circuit;
  const what = now ? "The delivery" : "The event";
  if (circuit?.state === "open") {
    return `${what} was queued; it is waiting: the webhook has been failing, and devicehooks tries it again ${nextTryText(circuit.next_attempt)}, then sends it.`;
  }
  return now ? "The delivery is being attempted again now." : "The event was queued for redelivery.";
}

/** The device the event is about, a link to its events on every webhook (the Activity page). */
function deviceRow(device) {
  if (!device) return null;
  return [
    h("dt", { text: "Device" }),
    h("dd", {}, h("a.mono", { href: deviceActivityHref(device), text: device }), h("span.muted.small", { text: " (its events on every webhook)" })),
  ];
}

/** A held delivery's reason (not attempted, so not an error), or the last attempt's error. */
function reasonRow(status) {
  if (!isHeld(status)) return [h("dt", { text: "Error" }), h("dd", { text: status.error })];
  const summary = reasonText(status.error, status.next_attempt);
  return [
    h("dt", { text: "Waiting because" }),
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
      h("tr", {}, ["Attempt", "Time", "Duration", "Result"].map((t) => h("th", { scope: "col", text: t }))),
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
        ),
      ),
    ),
  );
}

/** One attempt's request headers (as sent; signatures, never the secret) and its response. */
function attemptDetail(a, open) {
  const number = a.attempt ?? "";
  const headers = a.headers && typeof a.headers === "object" ? Object.entries(a.headers) : null;
  const lines = () => (headers || []).map(([k, v]) => `${k}: ${v}`).join("\n");
  const result = [a.status_code ? `HTTP ${a.status_code}` : "", a.error || ""].filter(Boolean).join(" · ") || "no answer";
  return h(
    "details.attempt",
    { open, "data-n": String(number) },
    h("summary", {}, h("strong", { text: `Attempt ${number}` }), ` · ${result} · request headers and response`),
    h(
      "div.attempt-body",
      {},
      h("div.section-head", {}, h("h3", { text: "Request headers" }), headers?.length ? copyButton("Copy headers", lines, `the headers of attempt ${number}`, `of attempt ${number}`) : null),
      headers?.length
        ? h("pre.payload.headers", { tabindex: "0", role: "region", "aria-label": `Request headers of attempt ${number}` }, h("code", { text: lines() }))
        : h("p.muted", {
            text: a.headers === undefined || a.headers === null
              ? "Not kept: the request was never built, or its headers did not fit in the event's record (an event to many webhooks keeps fewer)."
              : "None.",
          }),
      h("h3", { text: "Response" }),
      h("p", { text: [result, typeof a.duration_ms === "number" ? `${a.duration_ms} ms` : ""].filter(Boolean).join(", ") }),
      a.response_body
        ? h("pre.payload.response-body", { tabindex: "0", role: "region", "aria-label": `Response body of attempt ${number} (first 256 bytes)` }, h("code", { text: a.response_body }))
        : h("p.muted", { text: "No response body." }),
    ),
  );
}
