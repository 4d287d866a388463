// Start-up, session and hash routing (#/integrations, #/integrations/new, #/integrations/<id>[/activity|/edit],
// #/integrations/<id>/events/<event id>; the Activity tab's filters and page follow a "?"; #/activity?…: every
// webhook's events). Opening /#token=<jwt> signs in with that token.
import { renderActivity } from "./activity.js";
import { session, SignedOut, whenUnauthorized } from "./api.js";
import { h, problemView, replace, zoneText } from "./dom.js";
import { renderEvent } from "./event.js";
import { renderForm } from "./form.js";
import { renderDetail } from "./detail.js";
import { renderList } from "./list.js";
import { renderSignIn } from "./signin.js";

const main = document.getElementById("main");
let current = null; // the view on screen: {active, timers, cleanups}
let flash = null; // a message for the next view
let firstRoute = true;

let badLink = false; // the address had a #token= that could not be read

function takeTokenFromAddress() {
  const found = /^#token=([^&]*)/.exec(location.hash);
  if (!found) return;
  let token = "";
  try {
    token = decodeURIComponent(found[1]).trim().replace(/^Bearer\s+/i, "");
  } catch {
    // a malformed %-escape: not a token
  }
  // the token must not stay in the address bar, the history or a bookmark
  history.replaceState(null, "", `${location.pathname}${location.search}#/integrations`);
  if (token && !/\s/.test(token)) {
    session.set(token);
  } else {
    session.clear();
    badLink = true;
  }
}

function stopView() {
  if (!current) return;
  current.active = false;
  current.timers.forEach(clearTimeout);
  current.cleanups.forEach((fn) => fn());
  current = null;
}

function showSession() {
  const signedIn = Boolean(session.token);
  document.getElementById("session").hidden = !signedIn;
  document.getElementById("sections").hidden = !signedIn;
  const tenant = session.tenant();
  document.getElementById("tenant").textContent = signedIn ? `Tenant: ${tenant || "(default)"}` : "";
  // every time on every screen is local, in one format (YYYY-MM-DD HH:mm): the zone is said once, here
  document.getElementById("zone").textContent = signedIn ? `Times in ${zoneText()}` : "";
}

function signInView(message) {
  stopView();
  showSession();
  document.title = "Sign in · devicehooks";
  const view = newView();
  const brokenLink = badLink;
  badLink = false;
  renderSignIn(view.root, { message, brokenLink, onToken: (token) => signIn(token) });
}

function signIn(token) {
  session.set(token);
  flash = null;
  if (/^#\/(integrations|activity)/.test(location.hash)) route();
  else location.hash = "#/integrations";
}

function newView() {
  current = { active: true, timers: [], cleanups: [] };
  current.root = h("div.view");
  replace(main, current.root);
  return current;
}

function route() {
  stopView();
  showSession();
  if (!session.token) return signInView(null);
  // #/integrations/<id>/activity?device=…&page=2: the path, then the view's own state (filters, page)
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  let parts;
  try {
    parts = path.split("/").map(decodeURIComponent);
  } catch {
    parts = ["integrations"]; // a broken %-escape: the list
  }
  if (parts[0] !== "integrations" && parts[0] !== "activity") {
    history.replaceState(null, "", "#/integrations");
    parts.splice(0, parts.length, "integrations");
  }
  const view = newView();
  const ctx = {
    root: view.root,
    get active() {
      return view.active;
    },
    go(hash, message) {
      flash = message || null;
      if (location.hash === hash) route();
      else location.hash = hash;
    },
    /** replaces the current history entry (tab switches) without re-rendering */
    note(hash) {
      history.replaceState(null, "", hash);
    },
    /** adds a history entry (filters, page) without re-rendering: Back comes back to it */
    push(hash) {
      if (location.hash !== hash) history.pushState(null, "", hash);
    },
    query: new URLSearchParams(query),
    flash: flash,
    after(ms, fn) {
      const id = setTimeout(() => view.active && fn(), ms);
      view.timers.push(id);
      return id;
    },
    onStop(fn) {
      view.cleanups.push(fn);
    },
    /** Replaces the view with what went wrong, a heading and a Retry button. */
    fail(err) {
      if (err instanceof SignedOut || !view.active) return;
      const problem = problemView(err, () => route());
      document.title = `${problem.heading.textContent} · devicehooks`;
      replace(view.root, problem.node);
      problem.heading.focus({ preventScroll: true });
    },
  };
  flash = null;
  markSection(parts[0]);
  const [, id, sub, eventId] = parts;
  let work;
  if (parts[0] === "activity") work = renderActivity(ctx);
  else if (!id) work = renderList(ctx);
  else if (id === "new") work = renderForm(ctx);
  else if (sub === "edit") work = renderForm(ctx, id);
  else if (sub === "events" && eventId) work = renderEvent(ctx, id, eventId);
  else work = renderDetail(ctx, id, sub === "activity" ? "activity" : "settings");
  Promise.resolve(work).catch((err) => ctx.fail(err));
  // move focus to the new view's heading so that keyboard and screen-reader users follow along
  const heading = view.root.querySelector("h1");
  if (heading && !firstRoute && !view.root.contains(document.activeElement)) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
  firstRoute = false;
}

/** The sections' navigation (Webhooks, Activity): shown while signed in, the current one marked. */
function markSection(section) {
  for (const link of document.querySelectorAll("#sections a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

whenUnauthorized((error) => {
  session.clear();
  signInView(error);
});

document.getElementById("sign-out").addEventListener("click", () => {
  session.clear();
  signInView(null);
  history.replaceState(null, "", `${location.pathname}${location.search}`);
});
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) takeTokenFromAddress();
  route();
});

takeTokenFromAddress();
route();
