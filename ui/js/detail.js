// Webhook details: the "Settings" and "Activity" tabs.
import { events, integrations, SignedOut } from "./api.js";
import {
  append,
  busy,
  button,
  confirmDialog,
  confirmRetry,
  deliveryFor,
  detailsButton,
  deviceId,
  eventTypesLabel,
  EVENT_TYPES,
  formatTime,
  h,
  hookName,
  maskUrl,
  isTestEvent,
  modal,
  notice,
  replace,
  retryable,
  nextTryText,
  retryProblem,
  stateView,
  statusCell,
  triggerLabel,
  waitNote,
} from "./dom.js";
import { apiFilters, describeFilters, emptyPage, eventCells, filterQuery, filtersForm, localInput, pager, parseLocal, PER_PAGE, readFilters, readPage, rfc3339 } from "./filters.js";
import { field, rateLimitError, rateLimitInput, secretError, secretHelp } from "./form.js";
import { healthPanel } from "./health.js";

const POLL_MS = 10_000;
const FAST_POLL_MS = 2_000;

export async function renderDetail(ctx, id, initialTab) {
  document.title = "Webhook details · devicehooks";
  const base = `#/integrations/${encodeURIComponent(id)}`;
  const subtitle = h("p.subtitle.url");
  const heading = h("h1", { text: "Webhook details" }); // then the webhook's name
  const body = h("div", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
  append(ctx.root, [
    h(
      "nav.crumbs",
      { "aria-label": "Breadcrumb" },
      h("span", { text: "Settings" }),
      h("a", { href: "#/integrations", text: "Integrations" }),
    ),
    heading,
    subtitle,
    ctx.flash ? notice(ctx.flash[0], ctx.flash[1]) : null,
    body,
  ]);

  const hook = await integrations.get(id); // a failure replaces the view, with Retry (main.js)
  if (!ctx.active) return;
  body.removeAttribute("aria-busy");
  // the webhook's name (its description, else its URL's host), in the heading and the tab's title
  heading.textContent = hookName(hook);
  document.title = `${hookName(hook)} · Webhook · devicehooks`;
  subtitle.textContent = maskUrl(hook.credentials?.http?.url);

  const settingsPanel = h("div.panel#panel-settings", { role: "tabpanel", "aria-labelledby": "tab-settings", tabindex: "0" });
  const activityPanel = h("div.panel#panel-activity", { role: "tabpanel", "aria-labelledby": "tab-activity", tabindex: "0" });
  const tabs = [
    { name: "settings", label: "Settings", panel: settingsPanel },
    { name: "activity", label: "Activity", panel: activityPanel },
  ];
  const activity = activityView(ctx, hook, activityPanel);
  const settings = settingsView(ctx, hook, settingsPanel);
  const select = (name, focus = false) => {
    for (const tab of tabs) {
      const on = tab.name === name;
      tab.button.setAttribute("aria-selected", String(on));
      tab.button.tabIndex = on ? 0 : -1;
      tab.panel.hidden = !on;
      if (on && focus) tab.button.focus();
    }
    ctx.note(name === "activity" ? `${base}/activity${activity.query()}` : base);
    if (name === "activity") {
      settings.stop();
      activity.start();
    } else {
      activity.stop();
      settings.start();
    }
  };
  for (const [index, tab] of tabs.entries()) {
    tab.button = h(
      `button.tab#tab-${tab.name}`,
      {
        type: "button",
        role: "tab",
        "aria-controls": tab.panel.id,
        on: {
          click: () => select(tab.name),
          keydown: (event) => {
            const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
            if (!(event.key in moves)) return;
            event.preventDefault();
            select(tabs[(moves[event.key] + tabs.length) % tabs.length].name, true);
          },
        },
      },
      tab.label,
    );
  }
  replace(
    body,
    h("div.tabs", { role: "tablist", "aria-label": "Webhook" }, tabs.map((t) => t.button)),
    settingsPanel,
    activityPanel,
  );
  select(initialTab);
}

/** The Settings tab; while it is shown, a failing webhook's state is fetched again every 10 s. */
function settingsView(ctx, initial, panel) {
  let hook = initial;
  let timer = null;
  let watching = false;
  const stateDd = h("dd.state-now");
  const outcome = h("div.outcome");
  const healthBody = h("div.health-body", { "aria-busy": "true" }, h("p.muted", { text: "Loading…" }));
  const healthSection = h("section.health", { "aria-labelledby": "health-title" }, h("h2#health-title", { text: "Health, last 24 hours" }), healthBody);
  let healthTimer = null;
  let health = null; // the health last fetched: the delete dialog says how many deliveries wait
  // fetched when the tab is shown, then every 30 s while it stays shown
  const loadHealth = async () => {
    clearTimeout(healthTimer);
    if (!watching) return;
    if (!document.hidden) {
      try {
        health = await integrations.health(initial.id);
        if (!ctx.active || !watching) return;
        const open = healthBody.querySelector("details.hourly")?.open;
        replace(healthBody, healthPanel(health));
        if (open) healthBody.querySelector("details.hourly").open = true;
      } catch (err) {
        if (err instanceof SignedOut || !ctx.active) return;
        if (!healthBody.querySelector(".health-verdict")) replace(healthBody, h("p.muted", { text: `Health is not available: ${err.message}` }));
      } finally {
        healthBody.removeAttribute("aria-busy");
      }
    }
    healthTimer = ctx.after(30_000, loadHealth);
  };
  const say = (...nodes) => replace(outcome, ...nodes);
  const failed = (prefix) => (err) => {
    if (!(err instanceof SignedOut) && ctx.active) say(notice("error", prefix, h("span", { text: err.message })));
  };

  const render = () => {
    const enabled = hook.enabled !== false;
    const toggle = button(enabled ? "Disable" : "Enable", async () => {
      if (enabled && !(await confirmDialog(
        "Disable webhook",
        `Disable “${hookName(hook)}”? Nothing is sent to it while it is disabled: its new events are recorded as skipped, and the deliveries waiting for it are not sent. You can enable it again at any time.`,
        "Disable",
      ))) return;
      await busy(toggle, async () => {
        try {
          hook = await integrations.update(hook.id, { enabled: !enabled });
          if (!ctx.active) return;
          render();
          say(notice("ok", enabled ? "The webhook was disabled." : "The webhook was enabled."));
        } catch (err) {
          failed("The webhook could not be changed: ")(err);
        }
      });
    });
    // the event sent: "webhook-test", or a sample of a real type, so that a receiver can be tried on what it will get
    const testType = h(
      "select#test-type",
      { name: "test-type" },
      [["", "Test event (webhook-test)"], ...EVENT_TYPES].map(([value, label]) => h("option", { value, text: label })),
    );
    const test = button("Send test event", () =>
      busy(test, async () => {
        const type = testType.value || undefined;
        say(notice("info", `Sending ${type ? `a sample ${triggerLabel(type)} event` : "a test event"}…`));
        try {
          const result = await integrations.test(hook.id, type);
          if (ctx.active) say(testOutcome(result));
          loadHealth();
        } catch (err) {
          failed("The test event could not be sent: ")(err);
        }
      }),
    );
    const rotate = button("Rotate secret", async () => {
      const secret = await askSecret();
      if (secret === null) return;
      busy(rotate, async () => {
        try {
          await integrations.setCredentials(hook.id, hook.credentials.http.url, secret);
          hook = await integrations.get(hook.id);
          if (!ctx.active) return;
          render();
          say(notice("ok", "The secret was replaced: requests are now signed with the new secret."));
        } catch (err) {
          failed("The secret could not be replaced: ")(err);
        }
      });
    });
    const remove = button(
      "Delete webhook",
      async () => {
        // the dialog names the webhook and says how many deliveries wait for it (fetched now)
        let waiting = health;
        try {
          waiting = await integrations.health(hook.id);
        } catch (err) {
          if (err instanceof SignedOut) return;
        }
        if (!ctx.active) return;
        const sure = await confirmDialog("Delete webhook", deleteText(hook, waiting), "Delete");
        if (!sure) return;
        busy(remove, async () => {
          try {
            await integrations.remove(hook.id);
            ctx.go("#/integrations", ["ok", "The webhook was removed successfully."]);
          } catch (err) {
            failed("The webhook could not be removed: ")(err);
          }
        });
      },
      ".danger",
    );
    const edit = button("Edit webhook", () => ctx.go(`#/integrations/${encodeURIComponent(hook.id)}/edit`), ".primary");
    const hasSecret = Boolean(hook.credentials?.http?.secret);
    replace(stateDd, stateView(hook, true));
    replace(
      panel,
      h(
        "dl.props",
        {},
        h("dt", { text: "Destination URL" }),
        h("dd.url", { text: maskUrl(hook.credentials?.http?.url) }),
        h("dt", { text: "Description" }),
        h("dd", { text: hook.description || "—" }),
        h("dt", { text: "Event types" }),
        h("dd", { text: eventTypesLabel(hook) }),
        h("dt", { text: "Secret" }),
        h("dd", { text: hasSecret ? "Set" : "Not set" }),
        h("dt", { text: "State" }),
        stateDd,
      ),
      healthSection,
      h("div.actions.start", {}, edit, toggle, rotate),
      h(
        "div.test-tools",
        {},
        h("div.field", {}, h("label", { for: "test-type", text: "Test event type" }), testType),
        test,
      ),
      outcome,
      rateLimitForm(ctx, hook, (saved) => {
        hook = saved;
        replace(stateDd, stateView(hook, true));
        if (watching) watch();
      }),
      h(
        "div.danger-zone",
        {},
        h("p.help", { text: "Deleting the webhook stops deliveries at once. Its activity stays until it expires." }),
        remove,
      ),
    );
  };
  render();

  // the circuit changes on its own (paused, testing, closed again): follow it while it is shown
  const watch = () => {
    clearTimeout(timer);
    if (!watching || !hook.circuit) return;
    timer = ctx.after(POLL_MS, async () => {
      if (!document.hidden) {
        try {
          const fresh = await integrations.get(hook.id);
          if (!ctx.active || !watching) return;
          const enabledChanged = (fresh.enabled !== false) !== (hook.enabled !== false);
          hook = fresh;
          if (enabledChanged) render();
          else replace(stateDd, stateView(hook, true));
        } catch {
          // shown again at the next look; a 401 has already signed the user out
        }
      }
      watch();
    });
  };
  return {
    start() {
      watching = true;
      watch();
      loadHealth();
    },
    stop() {
      watching = false;
      clearTimeout(timer);
      clearTimeout(healthTimer);
    },
  };
}

/** The optional rate limit: deliveries per second, empty for none (PUT {"rate_limit": n|null}). */
function rateLimitForm(ctx, hook, onSaved) {
  const status = h("div.form-status");
  const input = rateLimitInput(hook.rate_limit);
  const limit = field({
    id: "rate-limit",
    label: "Rate limit (deliveries per second)",
    input,
    help: "At most this many deliveries per second to this webhook (1 to 10,000); more wait their turn, none is lost. Leave it empty for no limit.",
    validate: (v) => rateLimitError(v, input.validity.badInput),
  });
  const save = h("button.button", { type: "submit", text: "Save rate limit" });
  return h(
    "form.rate-form",
    {
      novalidate: true,
      on: {
        submit: (event) => {
          event.preventDefault();
          replace(status);
          if (!limit.check()) {
            input.focus();
            return;
          }
          const text = input.value.trim();
          const value = text ? Number(text) : null;
          busy(save, async () => {
            try {
              const saved = await integrations.update(hook.id, { rate_limit: value });
              if (!ctx.active) return;
              input.value = saved?.rate_limit == null ? "" : String(saved.rate_limit);
              if (saved) onSaved(saved);
              replace(
                status,
                notice(
                  "ok",
                  saved?.rate_limit == null
                    ? "The rate limit was removed: deliveries are not limited."
                    : `The rate limit was saved: at most ${saved.rate_limit} deliveries per second.`,
                ),
              );
            } catch (err) {
              if (err instanceof SignedOut || !ctx.active) return;
              limit.setError(...rateLimitProblem(err));
              input.focus();
            }
          });
        },
      },
    },
    limit.node,
    h("div.actions.start", {}, save),
    status,
  );
}

/** A refused rate limit in plain words, with the server's own reason after it. */
function rateLimitProblem(err) {
  const reason = String(err.message || "").replace(/^malformed request body:\s*/i, "");
  if (err.status === 400 && /^rate_limit\b/i.test(reason)) {
    return [
      "The rate limit was not saved: enter a whole number from 1 to 10,000, or leave the field empty for no limit. ",
      h("span.detail", { text: `(${reason.replace(/^rate_limit:\s*/i, "The server said: ")})` }),
    ];
  }
  return ["The rate limit was not saved: ", h("span", { text: err.message })];
}

/** The delete dialog's words: which webhook, and what becomes of the deliveries that wait for it. */
function deleteText(hook, health) {
  const url = maskUrl(hook.credentials?.http?.url);
  const name = hook.description ? `“${hook.description}” (${url})` : url;
  const n = health?.waiting;
  const more = health?.waiting_more ? "+" : "";
  let backlog = "devicehooks could not tell how many deliveries wait for it.";
  if (n === 0) backlog = "No delivery is waiting for it.";
  else if (Number.isInteger(n)) backlog = `${n.toLocaleString("en")}${more} ${n === 1 && !more ? "delivery is" : "deliveries are"} waiting for it: ${n === 1 && !more ? "it is" : "they are"} never sent.`;
  return `Delete the webhook ${name}? ${backlog} Deliveries stop at once; its activity stays until it expires. This cannot be undone.`;
}

function testOutcome(result) {
  const took = typeof result.duration_ms === "number" ? ` in ${result.duration_ms} ms` : "";
  const code = result.status_code ? `HTTP ${result.status_code}` : "no HTTP answer";
  const parts = [
    notice(
      result.success ? "ok" : "error",
      result.success ? `Test event delivered: ${code}${took}.` : `Test event failed: ${code}${took}`,
      result.error ? h("span", { text: ` (${result.error})` }) : null,
    ),
  ];
  if (result.response_body) {
    parts.push(
      h(
        "details.response",
        {},
        h("summary", { text: "Response body" }),
        h("pre", { tabindex: "0", role: "region", "aria-label": "Test event response body", text: result.response_body }),
      ),
    );
  }
  return parts;
}

function askSecret() {
  return modal("Rotate secret", (close) => {
    const secret = field({
      id: "new-secret",
      label: "New secret",
      input: h("input", { type: "text", name: "secret", autocomplete: "off", spellcheck: "false", class: "mono" }),
      help: secretHelp(false),
      validate: (v) => secretError(v.trim(), true),
    });
    return h(
      "form",
      {
        novalidate: true,
        on: {
          submit: (event) => {
            event.preventDefault();
            if (secret.check()) close(secret.input.value.trim().toLowerCase());
            else secret.input.focus();
          },
        },
      },
      h("p", { text: "Requests are signed with the new secret as soon as it is saved: update your receiver too." }),
      secret.node,
      h(
        "div.actions",
        {},
        button("Cancel", () => close(null)),
        h("button.button.primary", { type: "submit", text: "Save secret" }),
      ),
    );
  });
}

/** The Activity tab: polled every 10 s while shown (every 2 s while a retry asked for is under way), paginated. */
function activityView(ctx, hook, panel) {
  const here = `#/integrations/${encodeURIComponent(hook.id)}/activity`;
  // filters and page come from the address (#/integrations/<id>/activity?device=…&page=2)
  let filters = readFilters(ctx.query);
  let page = readPage(ctx.query);
  let timer = null;
  let running = false;
  let last = "";
  // deliveries retried from here: event id -> [attempts before, give up watching at]
  const watched = new Map();
  let fastUntil = 0; // after "Resend failed deliveries": look every 2 s for a while
  const updated = h("span.muted.small", { "aria-live": "off" });
  const table = h("div.activity-body", {}, h("p.muted", { text: "Loading…" }));
  const outcome = h("div.outcome");
  const pages = pager("Activity pages", (step) => turn(step));
  const refresh = button("Refresh", () => load());
  const resend = button("Resend failed deliveries…", () => resendFailed());
  const summary = h("p.filter-summary", { "aria-live": "polite" });
  const query = () => filterQuery(filters, page);
  const filterForm = filtersForm(filters, (chosen) => {
    filters = chosen;
    page = 1;
    ctx.push(here + query());
    last = "";
    load();
  });
  panel.append(
    h("div.section-head", {}, h("h2", { text: "Activity" }), h("div.head-tools", {}, updated, refresh, resend)),
    filterForm,
    summary,
    outcome,
    table,
    pages.node,
  );

  async function load() {
    if (!ctx.active || running || timer === false) return;
    clearTimeout(timer);
    if (document.hidden) {
      // nobody is looking: check again later (the first look after coming back is at most 10 s old)
      timer = ctx.after(POLL_MS, load);
      return;
    }
    running = true;
    try {
      const list = (await events.list(hook.id, page, PER_PAGE, apiFilters(filters))) || [];
      if (!ctx.active) return;
      updated.textContent = `Updated ${formatTime(new Date().toISOString(), true).slice(11)}`;
      settle(list);
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
      if (ctx.active && timer !== false) timer = ctx.after(watched.size || Date.now() < fastUntil ? FAST_POLL_MS : POLL_MS, load);
    }
  }

  /** Stops watching the retried deliveries that have had their new attempt (or after a minute). */
  function settle(list) {
    const now = Date.now();
    for (const [id, [before, until]] of watched) {
      const status = deliveryFor(list.find((e) => e.id === id), hook.id);
      const done = status && status.state !== "pending" && (status.attempts ?? 0) > before;
      if (done || now > until) watched.delete(id);
    }
  }

  /** Shows an outcome and moves the focus to it (the row's button may be redrawn away). */
  function tell(node) {
    node.tabIndex = -1;
    replace(outcome, node);
    node.focus();
  }

  function turn(step) {
    page = Math.max(1, page + step);
    ctx.push(here + query());
    last = "";
    load();
  }

  async function retry(event, btn, what) {
    if (!(await confirmRetry(what))) return;
    await busy(btn, async () => {
      try {
        // retry, never redeliver: the row may be stale, and a delivery delivered meanwhile is not sent again
        await events.retry(event.id, hook.id);
        if (!ctx.active) return;
        const status = deliveryFor(event, hook.id);
        watched.set(event.id, [status?.attempts ?? 0, Date.now() + 60_000]);
        const What = `${what[0].toUpperCase()}${what.slice(1)}`;
        tell(
          notice(
            "ok",
            hook.circuit?.state === "open"
              ? `${What} was queued; it is waiting: the webhook has been failing, and devicehooks tries it again ${nextTryText(hook.circuit.next_attempt)}, then sends it.`
              : `${What} is being sent again now.`,
          ),
        );
      } catch (err) {
        if (err instanceof SignedOut || !ctx.active) return;
        tell(retryProblem(err));
      }
      last = ""; // either way the row is shown as it stands now
      load();
    });
  }

  async function resendFailed(since) {
    const result = since ? await recoverFrom(hook, since.since, since.until) : await askRecover(hook);
    if (!result || !ctx.active) return;
    const [answer, until] = result;
    const count = answer?.count ?? 0;
    const text = recoverText(answer);
    const more = answer?.next_since
      ? [
          h("span", { text: ` There are more events after ${formatTime(answer.next_since, true)}. ` }),
          button("Continue from there", () => resendFailed({ since: answer.next_since, until })),
        ]
      : [];
    tell(notice("ok", text, ...more));
    if (count) fastUntil = Date.now() + 30_000;
    last = "";
    load();
  }

  /** Without the dialog: goes on from next_since (the user confirmed the window already). */
  async function recoverFrom(hook, since, until) {
    try {
      return [await integrations.recover(hook.id, since, until), until];
    } catch (err) {
      if (!(err instanceof SignedOut) && ctx.active) replace(outcome, notice("error", ...recoverProblem(err)));
      return null;
    }
  }

  function show(list) {
    const filtered = Object.values(filters).some(Boolean);
    pages.show(page, list.length, filtered);
    summary.textContent = `Showing ${describeFilters(filters)}${page > 1 ? `, page ${page}` : ""}.`;
    if (!list.length) {
      replace(table, emptyPage(page, filtered, turn));
      return;
    }
    const names = new Set();
    replace(
      table,
      h(
        "table.table.stack.activity",
        {},
        h("caption.sr-only", { text: `Activity, page ${page}${filtered ? ", filtered" : ""}` }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Time", "Device", "Event trigger", "Status", "Attempts"].map((t) => h("th", { scope: "col", text: t })),
            h("th", { scope: "col" }, h("span.sr-only", { text: "Actions" })),
          ),
        ),
        h(
          "tbody",
          {},
          list.map((event) => {
            const status = deliveryFor(event, hook.id);
            const attempts = status ? status.attempts ?? 0 : null;
            const device = deviceId(event);
            const details = detailsButton(
              names,
              [triggerLabel(event.type), device ? `device ${device}` : null, formatTime(event.time, true)],
              event.id,
              () => ctx.go(`#/integrations/${encodeURIComponent(hook.id)}/events/${encodeURIComponent(event.id)}`),
            );
            const what = `the ${triggerLabel(event.type)} event${device ? ` of device ${device}` : ""}`;
            let again = null;
            if (retryable(status) && !isTestEvent(event) && hook.enabled !== false) {
              again = h(
                "button.button.outlined.retry-now",
                { type: "button", on: { click: () => retry(event, again, what) } },
                "Retry now",
                h("span.sr-only", { text: ` for ${details.textContent.replace(/^View details for /, "")}` }),
              );
            }
            return h(
              "tr",
              {},
              eventCells(event),
              h("td.state", { "data-label": "Status" }, h("span.status-stack", {}, statusCell(status), waitNote(status))),
              h(
                "td.attempts",
                { "data-label": "Attempts" },
                attempts === null ? "—" : String(attempts),
                attempts === null ? null : h("span.unit", { text: attempts === 1 ? " attempt" : " attempts" }),
              ),
              h("td.manage", {}, h("span.row-actions", {}, details, again)),
            );
          }),
        ),
      ),
    );
  }

  return {
    query,
    start() {
      timer = null;
      load();
    },
    stop() {
      clearTimeout(timer);
      timer = false;
    },
  };
}

/** "Resend failed deliveries": asks for the time window; resolves [the API's answer, until] or null. */
function askRecover(hook) {
  return modal("Resend failed deliveries", (close) => {
    const status = h("div.form-status");
    const sinceInput = h("input", { type: "datetime-local", name: "since", value: localInput(new Date(Date.now() - 3600_000)) });
    const untilInput = h("input", { type: "datetime-local", name: "until" });
    const since = field({
      id: "recover-since",
      label: "From",
      input: sinceInput,
      help: "Your local time. Failing deliveries of events from this time on are sent again now, once each.",
      validate: (v) => (parseLocal(v) ? "" : "Enter the date and time to start from"),
    });
    const until = field({
      id: "recover-until",
      label: "Until (optional)",
      input: untilInput,
      help: "Leave it empty to go up to now.",
      validate: (v) => {
        if (!v) return "";
        const end = parseLocal(v);
        if (!end) return "Enter a date and time, or leave the field empty";
        const start = parseLocal(sinceInput.value);
        return start && end <= start ? "The end has to be after the start" : "";
      },
    });
    const submit = h("button.button.primary", { type: "submit", text: "Resend failed deliveries" });
    return h(
      "form.recover-form",
      {
        novalidate: true,
        on: {
          submit: (event) => {
            event.preventDefault();
            replace(status);
            const ok = [since.check(), until.check()];
            if (!ok[0] || !ok[1]) {
              (ok[0] ? untilInput : sinceInput).focus();
              return;
            }
            const from = rfc3339(parseLocal(sinceInput.value));
            const to = untilInput.value ? rfc3339(parseLocal(untilInput.value)) : undefined;
            busy(submit, async () => {
              try {
                close([await integrations.recover(hook.id, from, to), to]);
              } catch (err) {
                if (err instanceof SignedOut) {
                  close(null);
                  return;
                }
                replace(status, notice("error", ...recoverProblem(err)));
                if (err.status === 400) {
                  since.setError("Check this time: ", h("span", { text: recoverReason(err) }));
                  sinceInput.focus();
                }
              }
            });
          },
        },
      },
      h("p", {
        text: "Every delivery to this webhook in this time that is failing is sent again now: those waiting for a retry after a failed attempt, those held while the webhook kept failing, and those that failed with no more tries left. A delivered one is never sent again, and one already queued is not sent twice.",
      }),
      since.node,
      until.node,
      status,
      h("div.actions", {}, button("Cancel", () => close(null)), submit),
    );
  });
}

/** What a recover did, in words, from its answer: how many it found and sent, and why others were not sent. */
function recoverText(answer) {
  const count = answer?.count ?? 0;
  const found = answer?.found ?? count;
  const queued = answer?.already_queued ?? 0;
  if (!found) return "No failing delivery was found in that time: nothing was sent again.";
  const parts = [`${count} ${count === 1 ? "is" : "are"} being sent again now`];
  if (queued) parts.push(`${queued} ${queued === 1 ? "was" : "were"} already queued to be sent (not sent twice)`);
  for (const skip of answer?.skipped ?? []) parts.push(`${skip.count} not sent: ${skip.message}`);
  let text = `Found ${found} ${found === 1 ? "delivery" : "deliveries"} not delivered: ${parts.join("; ")}.`;
  const circuit = answer?.circuit;
  if (count && circuit?.state === "open") {
    const at = circuit.next_attempt ? ` at ${formatTime(circuit.next_attempt, true)}` : "";
    text += ` The webhook's circuit is open (its deliveries kept failing): they wait for its next probe${at}, and go once it succeeds.`;
  } else if (count && circuit?.state === "half-open") {
    text += " The webhook's circuit is half-open: one delivery goes first as its probe, the others once it succeeds.";
  }
  return text;
}

function recoverReason(err) {
  return String(err.message || "").replace(/^malformed request body:\s*/i, "");
}

/** A refused "resend failed deliveries" in plain words, with the server's own reason after it. */
function recoverProblem(err) {
  const said = h("span.detail", { text: ` (The server said: ${recoverReason(err)})` });
  if (err.status === 409) {
    // as the server gives it (a disabled webhook: "the webhook is disabled; enable it before …")
    return ["The failed deliveries were not sent again: ", h("span", { text: err.message })];
  }
  if (err.status === 400) {
    return ["The failed deliveries were not sent again: the start has to be in the past and before the end.", said];
  }
  return ["The failed deliveries were not sent again: ", h("span", { text: err.message })];
}
