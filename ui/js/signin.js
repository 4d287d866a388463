// Sign-in: paste a management token; on the local stack, or ask it for a development token.
import { devToken, localInfo } from "./api.js";
import { append, busy, h, notice } from "./dom.js";

export function renderSignIn(root, { message, brokenLink, onToken }) {
  const tokenInput = h("input#token", {
    type: "password",
    name: "token",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "token-help",
  });
  const problem = h("p.field-error#token-error", { role: "alert" });
  const form = h(
    "form.card",
    {
      novalidate: true,
      on: {
        submit: (event) => {
          event.preventDefault();
          const token = tokenInput.value.trim().replace(/^Bearer\s+/i, "");
          if (!token) {
            problem.textContent = "Enter a token";
            tokenInput.setAttribute("aria-invalid", "true");
            tokenInput.focus();
            return;
          }
          onToken(token);
        },
      },
    },
    h("div.field", {}, h("label", { for: "token", text: "Access token" }), tokenInput, problem),
    h("p.help#token-help", {
      text: "A Mender management token (JWT) for your tenant. It is kept in this browser tab only.",
    }),
    h("div.actions", {}, h("button.button.primary", { type: "submit", text: "Sign in" })),
  );

  const dev = h("section.card.dev", { hidden: true, "aria-labelledby": "dev-title" });
  append(root, [
    h("h1", { text: "Sign in" }),
    brokenLink
      ? notice(
          "error",
          "This sign-in link is not valid: the token in it could not be read. Paste your access token below, or ask for a new link.",
        )
      : null,
    message
      ? notice(
          "error",
          "Your session has expired or the token was refused: sign in again.",
          h("span.detail", { text: ` (${message})` }),
        )
      : null,
    form,
    dev,
  ]);

  localInfo().then((info) => {
    if (!info || !root.isConnected) return;
    const tenant = h("input#dev-tenant", { name: "tenant", value: "acme", autocomplete: "off" });
    const status = h("p.field-error", { role: "alert" });
    const submit = h("button.button", { type: "submit", text: "Use a development token" });
    dev.append(
      h("h2#dev-title", { text: "Local stack" }),
      h("p.help", { text: "This is a local devicehooks stack: it can sign a development token for any tenant." }),
      h(
        "form",
        {
          novalidate: true,
          on: {
            submit: (event) => {
              event.preventDefault();
              busy(submit, async () => {
                try {
                  onToken(await devToken(tenant.value.trim()));
                } catch (err) {
                  status.textContent = err.message;
                }
              });
            },
          },
        },
        h("div.field", {}, h("label", { for: "dev-tenant", text: "Tenant" }), tenant),
        status,
        h("div.actions", {}, submit),
      ),
    );
    dev.hidden = false;
  });
}
