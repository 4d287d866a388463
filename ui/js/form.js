// "Webhook details": the form that adds a webhook.
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

export function renderForm(ctx) {
  document.title = "Add webhook · devicehooks";
  const status = h("div.form-status");
  const hint = h("p.notice.info#url-hint", {
    role: "status",
    hidden: true,
    text: "The endpoint you provided is not protected by HTTPS; all the data will be transferred in plain text",
  });
  const url = field({
    id: "url",
    label: "URL",
    input: h("input", { type: "url", name: "url", required: true, autocomplete: "url", inputmode: "url", placeholder: "https://example.com/hooks/devices" }),
    validate: urlError,
    extra: { node: hint, update: (value) => (hint.hidden = !isPlainHttp(value)) },
  });
  const secret = field({
    id: "secret",
    label: "Secret",
    input: h("input", { type: "text", name: "secret", autocomplete: "off", spellcheck: "false", class: "mono" }),
    help: secretHelp(),
    validate: (v) => secretError(v.trim()),
  });
  const description = field({
    id: "description",
    label: "Description",
    input: h("textarea", { name: "description", rows: 3 }),
    help: "Optional: what this webhook is for.",
  });
  const boxes = EVENT_TYPES.map(([value, label]) => {
    const input = h("input", { type: "checkbox", name: "event_types", value, id: `event-${value}` });
    return { input, node: h("div.check", {}, input, h("label", { for: input.id, text: label })) };
  });
  const save = h("button.button.primary", { type: "submit", text: "Save" });

  const form = h(
    "form.card.form",
    {
      novalidate: true,
      "aria-labelledby": "form-title",
      on: {
        submit: (event) => {
          event.preventDefault();
          const checks = [url.check(), secret.check()];
          if (checks.includes(false)) {
            (checks[0] ? secret.input : url.input).focus();
            return;
          }
          const http = { url: url.input.value.trim() };
          if (secret.input.value.trim()) http.secret = secret.input.value.trim().toLowerCase();
          const body = { provider: "webhook", credentials: { type: "http", http } };
          if (description.input.value.trim()) body.description = description.input.value.trim();
          // the chosen types' scopes (none chosen: every scope), narrowed to the chosen types
          // when they are not all of their scopes' types
          const chosen = boxes.filter((b) => b.input.checked).map((b) => b.input.value);
          const scopes = Object.keys(SCOPES).filter((s) => !chosen.length || chosen.some((t) => SCOPE_OF[t] === s));
          body.scopes = scopes;
          const inScopes = EVENT_TYPES.filter(([t]) => scopes.includes(SCOPE_OF[t]));
          if (chosen.length && chosen.length < inScopes.length) body.event_types = chosen;
          busy(save, async () => {
            replace(status);
            try {
              await integrations.create(body);
              ctx.go("#/integrations", ["ok", "The webhook was set up successfully."]);
            } catch (err) {
              if (!ctx.active || err instanceof SignedOut) return;
              replace(status, notice("error", "There was an error creating the webhook: ", h("span", { text: err.message })));
            }
          });
        },
      },
    },
    h("p.help", {
      text: "Use webhooks to send data about device lifecycle events to third-party systems. Each event is POSTed as JSON to the URL.",
    }),
    url.node,
    secret.node,
    description.node,
    h(
      "fieldset.field",
      { "aria-describedby": "events-help" },
      h("legend", { text: "Webhook events" }),
      boxes.map((b) => b.node),
      h("p.help#events-help", { text: "Leave all unchecked to receive every event, including types added later." }),
    ),
    status,
    h(
      "div.actions",
      {},
      h("button.button", { type: "button", text: "Cancel", on: { click: () => ctx.go("#/integrations") } }),
      save,
    ),
  );

  append(ctx.root, [
    h(
      "nav.crumbs",
      { "aria-label": "Breadcrumb" },
      h("span", { text: "Settings" }),
      h("a", { href: "#/integrations", text: "Integrations" }),
    ),
    h("h1#form-title", { text: "Webhook details" }),
    form,
  ]);
  url.input.focus();
}
