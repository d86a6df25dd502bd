// Deliveries: what is waiting for each User's Receive Response URL, what became a dead
// letter (after the last attempt, or a 4xx), and for each dead letter a retry, or a
// discard with a confirmation and a reason (logged by the gateway with who asked).
import { api, query } from "./api.js";
import { byId, confirmWithReason, el, replace, say, table, when } from "./dom.js";

export function setup() {
  byId("deliveries-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    say("deliveries-status", "");
    load();
  });
}

export function enter() {
  load();
}

async function load() {
  say("deliveries-error", "");
  const user = byId("d-user").value.trim();
  let pending;
  let dead;
  try {
    [pending, dead] = await Promise.all([
      api(`/admin/outbox/pending${query({ user_id: user })}`),
      api(`/admin/outbox/dead-letters${query({ user_id: user })}`),
    ]);
  } catch (error) {
    if (error.status !== 401) say("deliveries-error", `The gateway refused: ${error.message}`);
    return;
  }
  const perUser = new Map();
  for (const [list, field] of [[pending, "pending"], [dead, "dead"]]) {
    for (const message of list) {
      const entry = perUser.get(message.user_id) ?? { user_id: message.user_id, pending: 0, dead: 0 };
      entry[field] += 1;
      perUser.set(message.user_id, entry);
    }
  }
  replace(
    byId("deliveries-users"),
    table(
      "Messages per User ID",
      [
        { label: "User ID", value: (u) => el("span", { class: "mono", text: u.user_id }) },
        { label: "Pending", value: (u) => u.pending, num: true },
        { label: "Dead letters", value: (u) => u.dead, num: true },
      ],
      [...perUser.values()].sort((a, b) => a.user_id.localeCompare(b.user_id)),
      "Nothing waiting and no dead letters.",
    ),
  );
  const columns = [
    { label: "User ID", value: (m) => el("span", { class: "mono", text: m.user_id }) },
    { label: "Seq", value: (m) => m.user_seq, num: true },
    { label: "Kind", value: (m) => m.kind },
    { label: "Message ID", value: (m) => el("span", { class: "serial", text: m.message_id }) },
    { label: "Attempts", value: (m) => m.attempts, num: true },
    { label: "Last error", value: (m) => m.last_error },
    { label: "Stored at", value: (m) => when(m.created_at), nowrap: true },
  ];
  const retry = {
    label: "Action",
    value: (m) => el("span", { class: "actions" },
      el("button", {
        type: "button",
        class: "small",
        "aria-label": `Retry ${m.message_id}`,
        onclick: () => retryLetter(m.message_id),
      }, "Retry"),
      " ",
      el("button", {
        type: "button",
        class: "small danger",
        "aria-label": `Discard ${m.message_id}`,
        onclick: () => discardLetter(m.message_id),
      }, "Discard"),
    ),
  };
  replace(byId("deliveries-dead"), table("Dead letters, oldest first", [retry, ...columns], dead, "No dead letters."));
  replace(byId("deliveries-pending"), table("Pending deliveries, in order", columns, pending, "Nothing pending."));
}

async function retryLetter(messageId) {
  say("deliveries-status", "");
  say("deliveries-error", "");
  try {
    await api(`/admin/outbox/dead-letters/${encodeURIComponent(messageId)}/retry`, { method: "POST" });
    say("deliveries-status", `Retrying ${messageId}: it is pending again.`);
  } catch (error) {
    if (error.status !== 401) say("deliveries-error", `Retry of ${messageId} refused: ${error.message}`);
  }
  await load();
}

async function discardLetter(messageId) {
  const reason = await confirmWithReason(
    `Discard ${messageId}?`,
    "It is removed for good: the User never receives it.",
    "Discard",
  );
  if (reason === null) return;
  say("deliveries-status", "");
  say("deliveries-error", "");
  try {
    await api(`/admin/outbox/dead-letters/${encodeURIComponent(messageId)}/discard`, {
      method: "POST",
      json: { reason },
    });
    say("deliveries-status", `Discarded ${messageId}.`);
  } catch (error) {
    if (error.status !== 401) say("deliveries-error", `Discard of ${messageId} refused: ${error.message}`);
  }
  await load();
}
