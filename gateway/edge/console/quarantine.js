// Quarantine: held requests by User ID, SRV and age; one request's header, the thresholds
// that apply to its User ID, its decisions and its signed XML (as text); release or
// delete with a confirmation and a reason that goes to the audit trail.
import { api, query } from "./api.js";
import { age, badge, byId, confirmWithReason, el, facts, replace, say, table, when } from "./dom.js";

const PAGE_SIZE = 100;
let lastFilter = {};
let lastRef = 0;
let openRef = null;

export function setup() {
  byId("quarantine-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    list(false);
  });
  byId("quarantine-next").addEventListener("click", () => list(true));
  byId("detail-close").addEventListener("click", closeDetail);
  byId("detail-release").addEventListener("click", () => decide("release"));
  byId("detail-delete").addEventListener("click", () => decide("delete"));
}

export function enter() {
  list(false);
}

function filterValues() {
  const form = byId("quarantine-filter");
  const minutes = form.min_age_minutes.value.trim();
  let seconds;
  if (minutes !== "") {
    const number = Number(minutes);
    // Not a number: sent as typed, so the gateway's own check names the problem.
    seconds = Number.isFinite(number) ? String(number * 60) : minutes;
  }
  return {
    user_id: form.user_id.value.trim(),
    srv: form.srv.value.trim(),
    min_age_seconds: seconds,
    state: form.state.value,
  };
}

async function list(nextPage) {
  if (!nextPage) {
    lastFilter = filterValues();
    lastRef = 0;
  }
  say("quarantine-error", "");
  let items;
  try {
    items = await api(`/admin/quarantine${query({ ...lastFilter, after_ref: lastRef || undefined, limit: PAGE_SIZE })}`);
  } catch (error) {
    if (error.status !== 401) say("quarantine-error", `The gateway refused the filter: ${error.message}`);
    replace(byId("quarantine-list"));
    byId("quarantine-next").hidden = true;
    return;
  }
  if (items.length) lastRef = items[items.length - 1].event_ref;
  byId("quarantine-next").hidden = items.length < PAGE_SIZE;
  const now = Date.now();
  replace(
    byId("quarantine-list"),
    table(
      `Quarantined requests (${lastFilter.state}), oldest first`,
      [
        { label: "Ref", value: (i) => el("button", { type: "button", class: "small quiet", "aria-label": `Open quarantined request ${i.event_ref}`, onclick: () => open(i.event_ref) }, String(i.event_ref)) },
        { label: "User ID", value: (i) => el("span", { class: "mono", text: i.user_id }) },
        { label: "RequestID", value: (i) => el("span", { class: "serial", text: i.request_id }) },
        { label: "SRV", value: (i) => i.srv },
        { label: "Version", value: (i) => i.duis_version },
        { label: "Breach", value: (i) => i.breach },
        { label: "Held at", value: (i) => when(i.held_at), nowrap: true },
        { label: "Age", value: (i) => age(i.held_at, now), num: true },
        { label: "State", value: (i) => i.state },
      ],
      items,
      "Nothing matches.",
    ),
  );
}

function closeDetail() {
  byId("quarantine-detail").hidden = true;
  openRef = null;
}

async function open(ref) {
  say("quarantine-error", "");
  let item;
  let rules;
  try {
    [item, rules] = await Promise.all([api(`/admin/quarantine/${ref}`), api("/admin/thresholds")]);
  } catch (error) {
    if (error.status !== 401) say("quarantine-error", `Could not open ${ref}: ${error.message}`);
    return;
  }
  openRef = ref;
  byId("quarantine-detail").hidden = false;
  say("detail-title", `Quarantined request ${item.event_ref} (${item.state})`);
  const held = item.state === "held";
  byId("detail-release").disabled = !held;
  byId("detail-delete").disabled = !held;
  const header = item.header ?? {};
  facts(byId("detail-header"), [
    ["RequestID", el("span", { class: "mono", text: item.request_id })],
    ["User ID (originator)", el("span", { class: "mono", text: item.user_id })],
    ["CommandVariant", header.command_variant],
    ["ServiceReference", header.service_reference],
    ["ServiceReferenceVariant", header.service_reference_variant ?? item.srv],
    ["FirstInSequence", header.first_in_sequence === null || header.first_in_sequence === undefined ? "" : String(header.first_in_sequence)],
    ["PrecedingServiceRequestID", header.preceding_request_id],
    ["DUIS version", item.duis_version],
    ["Breach", item.breach],
    ["Held at", when(item.held_at)],
    ["Finished at", when(item.finished_at)],
  ]);
  const applying = rules.rules.filter((r) => r.user_id === item.user_id || r.user_id === "*");
  replace(
    byId("detail-thresholds"),
    table(
      `Rules for ${item.user_id} and for each User ID`,
      [
        { label: "User ID", value: (r) => (r.user_id === "*" ? "* (each)" : r.user_id) },
        { label: "SRV", value: (r) => (r.srv === "*" ? "* (total)" : r.srv) },
        { label: "Window (s)", value: (r) => r.window_seconds, num: true },
        { label: "Limit", value: (r) => r.limit, num: true },
        { label: "Kind", value: (r) => r.kind },
        { label: "Covers this SRV", value: (r) => (r.srv === "*" || r.srv === item.srv ? badge("yes", "warn") : "no") },
      ],
      applying,
      "No threshold rule applies to this User ID now.",
    ),
  );
  replace(
    byId("detail-decisions"),
    table(
      "Release and delete decisions, oldest first",
      [
        { label: "At", value: (d) => when(d.at), nowrap: true },
        { label: "Action", value: (d) => d.action },
        { label: "By (admin client)", value: (d) => d.by },
        { label: "Reason", value: (d) => d.reason },
      ],
      item.decisions ?? [],
      "No decision yet.",
    ),
  );
  byId("detail-xml").textContent = item.request_xml || "(the request's bytes were dropped when it was deleted)";
  byId("detail-title").focus();
}

async function decide(action) {
  const ref = openRef;
  if (ref === null) return;
  const release = action === "release";
  const reason = await confirmWithReason(
    release ? `Release request ${ref}?` : `Delete request ${ref}?`,
    release
      ? "It is processed now as if just accepted, and counted against its User ID's thresholds."
      : "It is never processed; the User is told with a Service Response carrying E1.",
    release ? "Release" : "Delete",
  );
  if (reason === null) return;
  say("quarantine-status", "");
  say("quarantine-error", "");
  try {
    const answer = await api(`/admin/quarantine/${ref}/${action}`, { method: "POST", json: { reason } });
    say("quarantine-status", release ? `Released ${ref}: answered ${answer.answered}.` : `Deleted ${ref}; the User is told (E1).`);
  } catch (error) {
    if (error.status !== 401) say("quarantine-error", `${release ? "Release" : "Delete"} of ${ref} refused: ${error.message}`);
  }
  await open(ref);
  await list(false);
}
