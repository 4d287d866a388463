// The forms that add a webhook and edit one in place.
import { integrations, SignedOut } from "./api.js";
import { append, busy, EVENT_TYPES, h, notice, replace, SCOPE_OF, SCOPES } from "./dom.js";

export const MAX_SECRET_HEX = 128;

/** An error message for the URL, or "" when valid: an absolute http(s) URL with a host. */
export function urlError(value) {
  const text = value.trim();
  if (!text) return "This field is required";
  try {
    const url = new URL(text);
    if ((url.protocol === "http:" || url.protocol === "https:") && url.hostname && !/\s/.test(text)) return "";
  } catch {
    // not a URL at all
  }
  return "Please enter a valid URL";
}

export const isPlainHttp = (value) => /^http:\/\//i.test(value.trim());

/** An error message for a secret, or "" when valid: hex digits, an even number of them. */
export function secretError(value, required = false) {
  if (!value) return required ? "This field is required" : "";
  if (!/^[0-9a-f]+$/i.test(value) || value.length % 2) return "The secret has to be entered as a hexadecimal string";
  if (value.length > MAX_SECRET_HEX) return `The secret may have at most ${MAX_SECRET_HEX} hexadecimal digits`;
  return "";
}

/** A labelled input with its help, error message and live validation. */
export function field({ id, label, input, help, validate, extra }) {
  const error = h(`p.field-error#${id}-error`, { "aria-live": "polite" });
  const helpEl = help ? h(`p.help#${id}-help`, {}, help) : null;
  input.id = id;
  input.setAttribute("aria-describedby", [helpEl && `${id}-help`, `${id}-error`].filter(Boolean).join(" "));
  let touched = false;
  /** Shows `message` (nodes or text) as the field's error; none: valid. */
  const setError = (...message) => {
    replace(error, ...message.filter((part) => part !== ""));
    if (error.textContent) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  const check = () => {
    const message = validate ? validate(input.value) : "";
    setError(message);
    return !message;
  };
  input.addEventListener("input", () => {
    touched = true;
    check();
    extra?.update(input.value);
  });
  input.addEventListener("blur", () => touched && check());
  const node = h("div.field", {}, h("label", { for: id, text: label }), input, error, extra?.node, helpEl);
  return { node, input, check, setError };
}

export const MAX_RATE_LIMIT = 10_000;

/** The rate limit's input (deliveries per second, empty for none), as the add/edit form and Settings show it. */
export function rateLimitInput(value) {
  return h("input", {
    type: "number",
    name: "rate_limit",
    min: "1",
    max: String(MAX_RATE_LIMIT),
    step: "1",
    inputmode: "numeric",
    autocomplete: "off",
    placeholder: "No limit",
    value: value == null ? "" : String(value),
  });
}

/** An error message for a rate limit (deliveries per second), or "" when valid: empty, or 1 to 10,000. */
export function rateLimitError(value, badInput = false) {
  const text = value.trim();
  if (!text && !badInput) return "";
  if (badInput || !/^\d+$/.test(text) || Number(text) < 1 || Number(text) > MAX_RATE_LIMIT) {
    return "Enter a whole number of deliveries per second from 1 to 10,000, or leave the field empty for no limit";
  }
  return "";
}

export function secretHelp(optional = true) {
  return [
    "The secret signs the requests sent to your webhook (the X-Men-Signature header), so that your receiver can verify ",
    optional ? "their authenticity. It is optional but highly recommended. " : "their authenticity. ",
    "Enter it as a hexadecimal string, for example the output of ",
    h("code", { text: "openssl rand -hex 32" }),
    ".",
  ];
}

/** The server's reason for refusing a body field (`url`, `description`, `rate_limit`, `event_types`,
 * `scopes`), read from Mender's error text, e.g. "credentials: (http: (url: hostname resolves to ...).)." */
export function serverReason(err, name) {
  if (err?.status !== 400) return null;
  const text = String(err.message || "").replace(/^malformed request body:\s*/i, "");
  const found = new RegExp(`(?:^|[(\\s])${name}(?:\\[\\d+\\])?:\\s*([^()]*?)\\.?\\s*(?:\\)|$)`, "i").exec(text);
  return found ? found[1] || text : null;
}

/** A refused URL in plain words. */
export function urlProblem(reason) {
  if (/reserved|private|loopback|link.local|not allowed|forbidden|internal/i.test(reason)) {
    return "This address is on a private or reserved network, which webhooks may not send to. Use an address on the public internet";
  }
  if (/resolve|lookup|no such host|not known|dns/i.test(reason)) return "The host name in this URL could not be found. Check it for typos";
  if (/long|length|at most/i.test(reason)) return "This URL is too long";
  if (/scheme|https?\b/i.test(reason)) return "Use a URL that starts with https:// or http://";
  return "The server did not accept this URL";
}

/** Puts a server refusal on its field (plain words, then the server's reason); false when it names none. */
function showOnField(err, fields) {
  for (const [name, f, plain] of fields) {
    const reason = f && serverReason(err, name);
    if (reason) {
      f.setError(`${plain(reason)}. `, h("span.detail", { text: `(The server said: ${reason})` }));
      f.input.focus();
      return true;
    }
  }
  return false;
}

/** The event-type checkboxes, checked as `hook` receives them (none checked: every event). */
function eventBoxes(hook) {
  const types = Array.isArray(hook?.event_types) ? hook.event_types : null;
  const scopes = Array.isArray(hook?.scopes) && hook.scopes.length ? hook.scopes : ["deviceauth"];
  const all = !hook || (!types && Object.keys(SCOPES).every((sc) => scopes.includes(sc)));
  return EVENT_TYPES.map(([value, label]) => {
    const checked = !all && (types ? types.includes(value) : scopes.includes(SCOPE_OF[value]));
    const input = h("input", { type: "checkbox", name: "event_types", value, id: `event-${value}`, checked });
    return { input, node: h("div.check", {}, input, h("label", { for: input.id, text: label })) };
  });
}

/** The chosen types' scopes (none chosen: every scope) and the types when they narrow those scopes. */
function chosenEvents(boxes) {
  const chosen = boxes.filter((b) => b.input.checked).map((b) => b.input.value);
  const scopes = Object.keys(SCOPES).filter((sc) => !chosen.length || chosen.some((t) => SCOPE_OF[t] === sc));
  const inScopes = EVENT_TYPES.filter(([t]) => scopes.includes(SCOPE_OF[t]));
  return { scopes, event_types: chosen.length && chosen.length < inScopes.length ? chosen : null };
}

/** "Add webhook" (no id) or "Edit webhook": URL, description, event types, and the secret (adding) or
 * the rate limit (editing; the secret has its own Rotate secret). */
export async function renderForm(ctx, id) {
  const editing = Boolean(id);
  const title = editing ? "Edit webhook" : "Add webhook";
  document.title = `${title} · devicehooks`;
  const back = editing ? `#/integrations/${encodeURIComponent(id)}` : "#/integrations";
  const heading = h("h1#form-title", { text: title });
  const slot = h("div", { "aria-busy": editing ? "true" : null });
  append(ctx.root, [
    h(
      "nav.crumbs",
      { "aria-label": "Breadcrumb" },
      h("span", { text: "Settings" }),
      h("a", { href: "#/integrations", text: "Integrations" }),
      editing ? h("a", { href: back, text: "Webhook details" }) : null,
    ),
    heading,
    slot,
  ]);
  let hook = null;
  if (editing) {
    slot.append(h("p.muted", { text: "Loading…" }));
    hook = await integrations.get(id);
    if (!ctx.active) return;
    slot.removeAttribute("aria-busy");
  }

  const status = h("div.form-status");
  const hint = h("p.notice.info#url-hint", {
    role: "status",
    hidden: true,
    text: "The endpoint you provided is not protected by HTTPS; all the data will be transferred in plain text",
  });
  const url = field({
    id: "url",
    label: "URL",
    input: h("input", { type: "url", name: "url", required: true, autocomplete: "url", inputmode: "url", placeholder: "https://example.com/hooks/devices", value: hook?.credentials?.http?.url ?? "" }),
    validate: urlError,
    extra: { node: hint, update: (value) => (hint.hidden = !isPlainHttp(value)) },
  });
  hint.hidden = !isPlainHttp(url.input.value);
  const secret = editing
    ? null
    : field({
        id: "secret",
        label: "Secret",
        input: h("input", { type: "text", name: "secret", autocomplete: "off", spellcheck: "false", class: "mono" }),
        help: secretHelp(),
        validate: (v) => secretError(v.trim()),
      });
  const description = field({
    id: "description",
    label: "Description",
    input: h("textarea", { name: "description", rows: 3, text: hook?.description ?? "" }),
    help: "Optional: what this webhook is for.",
  });
  const limitInput = rateLimitInput(hook?.rate_limit);
  const limit = editing
    ? field({
        id: "edit-rate-limit",
        label: "Rate limit (deliveries per second)",
        input: limitInput,
        help: "1 to 10,000; more wait their turn, none is lost. Leave it empty for no limit.",
        validate: (v) => rateLimitError(v, limitInput.validity.badInput),
      })
    : null;
  const boxes = eventBoxes(hook);
  const save = h("button.button.primary", { type: "submit", text: editing ? "Save changes" : "Save" });
  const fields = [
    ["url", url, urlProblem],
    ["description", description, () => "The description was not accepted"],
    ["rate_limit", limit, () => "Enter a whole number from 1 to 10,000, or leave the field empty for no limit"],
  ];

  const submit = (event) => {
    event.preventDefault();
    replace(status);
    const invalid = [url, secret, limit].filter(Boolean).filter((f) => !f.check())[0];
    if (invalid) {
      invalid.input.focus();
      return;
    }
    const chosen = chosenEvents(boxes);
    const newUrl = url.input.value.trim();
    const text = description.input.value.trim();
    let body;
    if (editing) {
      // only what changed: an unchanged URL is not checked again, an unchanged filter is kept as it is
      body = {};
      if (newUrl !== hook.credentials?.http?.url) body.url = newUrl;
      if (text !== (hook.description ?? "")) body.description = text;
      const before = chosenEvents(eventBoxes(hook));
      if (JSON.stringify(chosen) !== JSON.stringify(before)) Object.assign(body, chosen);
      const rate = limitInput.value.trim() ? Number(limitInput.value.trim()) : null;
      if (rate !== (hook.rate_limit ?? null)) body.rate_limit = rate;
    } else {
      const http = { url: newUrl };
      if (secret.input.value.trim()) http.secret = secret.input.value.trim().toLowerCase();
      body = { provider: "webhook", credentials: { type: "http", http } };
      if (text) body.description = text;
      body.scopes = chosen.scopes;
      if (chosen.event_types) body.event_types = chosen.event_types;
    }
    busy(save, async () => {
      try {
        if (!editing) {
          await integrations.create(body);
          ctx.go("#/integrations", ["ok", "The webhook was set up successfully."]);
        } else {
          if (Object.keys(body).length) await integrations.update(id, body);
          ctx.go(back, ["ok", Object.keys(body).length ? "The webhook was saved." : "Nothing was changed."]);
        }
      } catch (err) {
        if (!ctx.active || err instanceof SignedOut) return;
        if (showOnField(err, fields)) return;
        replace(
          status,
          notice("error", editing ? "The webhook was not saved: " : "The webhook was not created: ", h("span", { text: err.message })),
        );
      }
    });
  };

  const form = h(
    "form.card.form",
    { novalidate: true, "aria-labelledby": "form-title", on: { submit } },
    h("p.help", {
      text: editing
        ? "Changes apply to the next deliveries; the webhook keeps its activity and its secret."
        : "Use webhooks to send data about device lifecycle events to third-party systems. Each event is POSTed as JSON to the URL.",
    }),
    url.node,
    secret?.node,
    description.node,
    h(
      "fieldset.field",
      { "aria-describedby": "events-help" },
      h("legend", { text: "Webhook events" }),
      boxes.map((b) => b.node),
      h("p.help#events-help", { text: "Leave all unchecked to receive every event, including types added later." }),
    ),
    limit?.node,
    status,
    h(
      "div.actions",
      {},
      h("button.button", { type: "button", text: "Cancel", on: { click: () => ctx.go(back) } }),
      save,
    ),
  );
  replace(slot, form);
  if (editing) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  } else {
    url.input.focus();
  }
}
