// A webhook's health over the last 24 hours (GET /integrations/{id}/health): a verdict in words and
// shape, the success rate, and deliveries per hour as a small chart with a text alternative.
import { formatTime, h, sinceEl, timeEl } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

const count = (n) => (Number.isFinite(n) ? n : 0);
const plural = (n, word) => `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;

/** The verdict: [kind, word, symbol]. Failing: failing since a time, the circuit open, or fewer than
 * half delivered; degraded: some failed (under 95% delivered); never "healthy" then. */
export function verdict(health) {
  const rate = typeof health.success_rate === "number" ? health.success_rate : null;
  if (health.failing_since || health.circuit?.state === "open" || (rate !== null && rate < 0.5)) return ["bad", "Failing", "✕"];
  if (rate !== null && rate < 0.95) return ["warn", "Degraded", "▲"];
  if (!count(health.delivered) && !count(health.failed)) return ["none", "No deliveries", "–"];
  return ["good", "Healthy", "✓"];
}

export function rateText(health) {
  const delivered = count(health.delivered);
  const total = delivered + count(health.failed);
  if (!total || typeof health.success_rate !== "number") return "No deliveries in the last 24 hours";
  const pct = Math.floor(health.success_rate * 1000) / 10; // 99.96% is not "100%"
  return `${pct}% delivered (${delivered.toLocaleString("en")} of ${total.toLocaleString("en")})`;
}

/** The deliveries that wait for a try (retrying or held: no attempt counted for a held one), in
 * words: "155 deliveries waiting, the oldest since 12:40"; "1,000+" past the API's count cap. */
export function waitingLine(health, tag = "p") {
  if (!Number.isInteger(health.waiting)) return null;
  const n = health.waiting;
  if (n <= 0) return tag === "p" ? h("p.health-backlog", { text: "No deliveries waiting" }) : null;
  const many = `${n.toLocaleString("en")}${health.waiting_more ? "+" : ""} ${n === 1 && !health.waiting_more ? "delivery" : "deliveries"}`;
  return h(
    `${tag}.health-backlog`,
    {},
    h("strong", { text: `${many} waiting` }),
    health.oldest_waiting_at ? [n === 1 && !health.waiting_more ? ", since " : ", the oldest since ", sinceEl(health.oldest_waiting_at)] : null,
  );
}

/** The verdict as a badge: a symbol (its shape differs too) and the word. */
export function badge(health) {
  const [kind, word, symbol] = verdict(health);
  return h(`span.health-badge.${kind}`, {}, h("span.symbol", { "aria-hidden": "true", text: symbol }), word);
}

const hourLabel = (hour) => formatTime(hour).slice(11);

/** The chart's words: totals, and when failures happened. */
function describe(hours, health) {
  const failedHours = hours.filter((x) => count(x.failed) > 0);
  const parts = [
    `Deliveries per hour, last ${health.window_hours ?? 24} hours: ${count(health.delivered).toLocaleString("en")} delivered, ${count(health.failed).toLocaleString("en")} failed`,
  ];
  if (failedHours.length) {
    parts.push(`failures in ${plural(failedHours.length, "hour")}, the latest at ${hourLabel(failedHours.at(-1).hour)}`);
  }
  return parts.join("; ") + ".";
}

/** Delivered per hour as bars above the line, failed as bars below it (position and colour). */
export function chart(health, small = false) {
  const hours = Array.isArray(health.hourly) ? health.hourly : [];
  const step = small ? 4 : 12;
  const half = small ? 12 : 36;
  const max = Math.max(1, ...hours.map((x) => Math.max(count(x.delivered), count(x.failed))));
  const height = (n) => (n > 0 ? Math.max(1.5, (n / max) * (half - 1)) : 0);
  const bars = hours.flatMap((x, i) => {
    const up = height(count(x.delivered));
    const down = height(count(x.failed));
    const title = svg("title", {}, `${hourLabel(x.hour)}: ${count(x.delivered)} delivered, ${count(x.failed)} failed`);
    return [
      svg("rect", { class: "up", x: i * step + 0.5, y: half - up, width: step - 1, height: up }),
      svg("rect", { class: "down", x: i * step + 0.5, y: half + 1, width: step - 1, height: down }),
      // the whole hour's column, for its tooltip
      svg("rect", { class: "hit", x: i * step, y: 0, width: step, height: half * 2 + 1 }, title),
    ];
  });
  const width = Math.max(1, hours.length) * step;
  return svg(
    "svg",
    { class: `bars${small ? " small" : ""}`, viewBox: `0 0 ${width} ${half * 2 + 1}`, width, height: half * 2 + 1, role: "img", "aria-label": describe(hours, health) },
    svg("line", { class: "axis", x1: 0, x2: width, y1: half + 0.5, y2: half + 0.5 }),
    ...bars,
  );
}

/** One line for the integrations list: badge, rate and the small chart. */
export function healthCell(health) {
  const attempted = count(health.delivered) + count(health.failed) > 0;
  return h(
    "span.health-cell",
    {},
    h("span.health-line", {}, badge(health), attempted ? h("span.rate", { text: rateText(health).replace(/ \(.*\)$/, "") }) : null),
    chart(health, true),
    waitingLine(health, "span"), // the backlog, only when some wait
  );
}

/** The Settings tab's section: verdict, numbers, chart with legend, and the hourly table. */
export function healthPanel(health) {
  const last = health.last_delivery;
  const lastText = last
    ? [
        timeEl(last.at, true),
        ` · ${last.outcome === "delivered" ? "Delivered" : last.outcome ? last.outcome[0].toUpperCase() + last.outcome.slice(1) : "Attempted"}`,
        typeof last.status_code === "number" ? ` (HTTP ${last.status_code})` : "",
        last.error ? h("span.muted", { text: `: ${last.error}` }) : null,
      ]
    : "None in the last 24 hours";
  const hours = Array.isArray(health.hourly) ? health.hourly : [];
  return [
    h("p.health-verdict", {}, badge(health), h("span", { text: ` ${rateText(health)}` })),
    waitingLine(health),
    h(
      "dl.props",
      {},
      h("dt", { text: "Last delivery" }),
      h("dd", {}, lastText),
      health.failing_since ? [h("dt", { text: "Failing since" }), h("dd", {}, timeEl(health.failing_since, true))] : null,
      health.disable_at
        ? [h("dt", { text: "Disabled on" }), h("dd.warn-text", {}, timeEl(health.disable_at, true), " if it keeps failing until then")]
        : null,
    ),
    h(
      "figure.health-chart",
      {},
      chart(health),
      h(
        "figcaption",
        {},
        h("span.legend.up", {}, h("span.key", { "aria-hidden": "true" }), "Delivered (above the line)"),
        h("span.legend.down", {}, h("span.key", { "aria-hidden": "true" }), "Failed (below the line)"),
        hours.length ? h("span.muted", { text: `${hourLabel(hours[0].hour)} to now, one bar an hour` }) : null,
      ),
    ),
    h(
      "details.hourly",
      {},
      h("summary", { text: "Deliveries per hour as a table" }),
      h(
        "div.table-scroll",
        { tabindex: "0", role: "region", "aria-label": "Deliveries per hour" },
        h(
          "table.table",
          {},
          h("thead", {}, h("tr", {}, ["Hour", "Delivered", "Failed"].map((t) => h("th", { scope: "col", text: t })))),
          h(
            "tbody",
            {},
            hours.map((x) =>
              h("tr", {}, h("th", { scope: "row" }, timeEl(x.hour)), h("td", { text: String(count(x.delivered)) }), h("td", { text: String(count(x.failed)) })),
            ),
          ),
        ),
      ),
    ),
  ];
}
