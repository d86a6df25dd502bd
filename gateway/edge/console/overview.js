// Overview: live traffic from GET /admin/traffic, refreshed without reloading the page.
// The route's counts are cumulative; rates and the p99 are over the interval between
// two refreshes (as Prometheus's rate() and histogram_quantile() compute them).
import { api } from "./api.js";
import { byId, el, replace, say, table } from "./dom.js";

const REFRESH_MS = 2000;
const QUANTILE = 0.99;
let timer = null;
let previous = null;

export function setup() {}

export function enter() {
  previous = null;
  refresh();
}

export function leave() {
  clearTimeout(timer);
  timer = null;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const view = await api("/admin/traffic");
    render(view, previous);
    previous = view;
    say("overview-error", "");
    say("overview-updated", `Updated ${new Date().toLocaleTimeString()}.`);
  } catch (error) {
    if (error.status === 401) return;
    say("overview-error", `Could not refresh: ${error.message}`);
  }
  if (!byId("page-overview").hidden) timer = setTimeout(refresh, REFRESH_MS);
}

function key(labels) {
  return JSON.stringify(labels);
}

// Per label set: {labels, total, rate} (rate null until there are two samples).
function rates(current, before, seconds) {
  const earlier = new Map((before ?? []).map((c) => [key(c.labels), c.count]));
  return current.map((c) => ({
    labels: c.labels,
    total: c.count,
    rate: before && seconds > 0 ? Math.max(0, c.count - (earlier.get(key(c.labels)) ?? 0)) / seconds : null,
  }));
}

// The latency under which QUANTILE of the interval's requests were answered, interpolated
// within its bucket; null when none were answered in the interval.
export function intervalQuantile(buckets, earlierBuckets, quantile = QUANTILE) {
  const before = new Map((earlierBuckets ?? []).map((b) => [String(b.le), b.count]));
  const deltas = buckets.map((b) => ({ le: b.le, count: b.count - (before.get(String(b.le)) ?? 0) }));
  const total = deltas.length ? deltas[deltas.length - 1].count : 0;
  if (total <= 0) return null;
  const rank = quantile * total;
  let lower = 0;
  let below = 0;
  for (const bucket of deltas) {
    if (bucket.count >= rank) {
      if (bucket.le === null) return { over: lower };
      const inBucket = bucket.count - below;
      const fraction = inBucket > 0 ? (rank - below) / inBucket : 1;
      return { seconds: lower + (bucket.le - lower) * fraction };
    }
    if (bucket.le !== null) lower = bucket.le;
    below = bucket.count;
  }
  return null;
}

function rateText(rate) {
  return rate === null ? "…" : rate.toFixed(rate < 10 ? 2 : 1);
}

function latencyText(p99) {
  if (p99 === null) return "no requests";
  if (p99.over !== undefined) return `> ${(p99.over * 1000).toFixed(0)} ms`;
  return `${(p99.seconds * 1000).toFixed(p99.seconds < 0.01 ? 2 : 1)} ms`;
}

function card(label, value, id) {
  return el("div", { class: "card", id }, el("div", { class: "label", text: label }), el("div", { class: "value", text: value }));
}

function render(view, before) {
  const traffic = view.traffic;
  const seconds = before ? traffic.monotonic_seconds - before.traffic.monotonic_seconds : 0;
  const requests = rates(traffic.requests, before?.traffic.requests, seconds);
  const refusals = rates(traffic.refusals, before?.traffic.refusals, seconds);
  const totalRate = before ? requests.reduce((sum, r) => sum + (r.rate ?? 0), 0) : null;
  const p99 = before ? intervalQuantile(traffic.latency_buckets, before.traffic.latency_buckets) : null;
  replace(
    byId("overview-cards"),
    card("Requests per second", rateText(totalRate), "card-rate"),
    card("p99 acknowledgement", before ? latencyText(p99) : "…", "card-p99"),
    card("Outbox pending", view.outbox_pending, "card-outbox"),
    card("Dead letters", view.outbox_dead_letters, "card-dead"),
    card("Quarantine held", view.quarantine_held, "card-quarantine"),
  );
  const byOutcome = [["Version", "version"], ["Outcome", "outcome"]];
  const byReason = [["Stage", "stage"], ["Reason", "reason"]];
  replace(
    byId("overview-requests"),
    ratesTable("Requests answered, by DUIS version and outcome code", byOutcome, requests, "No requests answered yet."),
  );
  replace(
    byId("overview-refusals"),
    ratesTable("Requests refused, by stage and reason", byReason, refusals, "No refusals."),
  );
}

// labels: [[column heading, label name]], then the interval's rate and the total.
function ratesTable(caption, labels, rows, emptyText) {
  return table(
    caption,
    [
      ...labels.map(([heading, name]) => ({ label: heading, value: (r) => r.labels[name] })),
      { label: "Per second", value: (r) => rateText(r.rate), num: true },
      { label: "Total", value: (r) => r.total, num: true },
    ],
    rows,
    emptyText,
  );
}
