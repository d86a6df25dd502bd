// Thresholds: the rules in force per User ID, edited in place and saved with
// PUT /admin/thresholds (a TOML rules file, as `duisgw thresholds set` sends). The
// gateway validates; its refusal is shown as it gave it. Attribute limits and the
// counter settings are kept as they are. Below: the audit trail of every change.
import { api } from "./api.js";
import { byId, el, replace, say, table, when } from "./dom.js";

const KINDS = ["warning", "user_quarantine", "dcc_quarantine"];
const FIELDS = [
  { name: "user_id", label: "User ID", placeholder: "* or 90-B3-D5-1F-30-01-00-00" },
  { name: "srv", label: "SRV", placeholder: "* or 4.1.1" },
  { name: "window_seconds", label: "Window (s)", integer: true },
  { name: "limit", label: "Limit", integer: true },
];
let inForce = null;

export function setup() {
  byId("thresholds-form").addEventListener("submit", save);
  byId("thresholds-add").addEventListener("click", () => {
    const body = rulesBody();
    body.append(ruleRow({ user_id: "*", srv: "*", window_seconds: 3600, limit: 1000, kind: "warning" }, body.children.length));
    body.lastElementChild.querySelector("input").focus();
  });
  byId("thresholds-reset").addEventListener("click", () => enter());
  byId("t-user").addEventListener("input", applyFilter);
  byId("thresholds-filter").addEventListener("submit", (event) => event.preventDefault());
}

export async function enter() {
  say("thresholds-error", "");
  try {
    const [config, audit] = await Promise.all([api("/admin/thresholds"), api("/admin/thresholds/audit")]);
    inForce = config;
    renderRules(config.rules);
    renderAttributes(config.attribute_limits);
    renderAudit(audit);
  } catch (error) {
    if (error.status !== 401) say("thresholds-error", `Could not read the rules: ${error.message}`);
  }
}

function rulesBody() {
  return byId("thresholds-rules").querySelector("tbody");
}

function ruleRow(rule, index) {
  const cells = FIELDS.map((f) =>
    el("td", {}, el("input", {
      name: f.name,
      value: String(rule[f.name]),
      "aria-label": `${f.label}, rule ${index + 1}`,
      placeholder: f.placeholder,
      inputmode: f.integer ? "numeric" : null,
      spellcheck: "false",
    })),
  );
  const kind = el("select", { name: "kind", "aria-label": `Kind, rule ${index + 1}` },
    ...KINDS.map((k) => el("option", { value: k, selected: k === rule.kind }, k)));
  const remove = el("button", {
    type: "button",
    class: "small quiet",
    "aria-label": `Remove rule ${index + 1}`,
    onclick: (event) => event.currentTarget.closest("tr").remove(),
  }, "Remove");
  return el("tr", { "data-user": rule.user_id }, ...cells, el("td", {}, kind), el("td", {}, remove));
}

function renderRules(rules) {
  const head = el("tr", {}, ...[...FIELDS.map((f) => f.label), "Kind", ""].map((label) => el("th", { scope: "col", text: label })));
  const body = el("tbody", {}, ...rules.map(ruleRow));
  replace(byId("thresholds-rules"), el("table", {}, el("caption", { text: "Threshold rules in force" }), el("thead", {}, head), body));
  applyFilter();
}

function applyFilter() {
  const wanted = byId("t-user").value.trim().toUpperCase();
  for (const row of rulesBody()?.children ?? []) {
    const user = row.querySelector("input[name=user_id]").value.trim().toUpperCase();
    row.classList.toggle("hidden-row", wanted !== "" && user !== wanted && user !== "*");
  }
}

function renderAttributes(limits) {
  replace(
    byId("thresholds-attributes"),
    table(
      "Attribute limits (kept as they are when the rules are saved)",
      [
        { label: "User ID", value: (a) => a.user_id },
        { label: "SRV", value: (a) => a.srv },
        { label: "Attribute", value: (a) => a.attribute },
        { label: "Min", value: (a) => a.min, num: true },
        { label: "Max", value: (a) => a.max, num: true },
      ],
      limits,
      "No attribute limits.",
    ),
  );
}

function renderAudit(entries) {
  replace(
    byId("thresholds-audit"),
    table(
      "Every change of the rules in force, newest first",
      [
        { label: "At", value: (e) => when(e.at), nowrap: true },
        { label: "Source", value: (e) => e.source },
        { label: "By", value: (e) => e.by },
        { label: "Rules", value: (e) => e.rules, num: true },
        { label: "Attribute limits", value: (e) => e.attribute_limits, num: true },
        { label: "Note", value: (e) => e.note },
        { label: "Rules as given", value: (e) => el("details", {}, el("summary", { text: "TOML" }), el("pre", { text: e.toml })) },
      ],
      entries,
      "No changes recorded.",
    ),
  );
}

// TOML text from the form. A value that is not what the rule needs (letters in a limit)
// is sent as a string, so the gateway's check names the rule and field that is wrong.
function tomlString(value) {
  return JSON.stringify(String(value));
}

function tomlInteger(text) {
  return /^[0-9]{1,15}$/.test(text) ? text : tomlString(text);
}

function tomlNumber(value) {
  return typeof value === "number" && Number.isFinite(value) ? String(value) : tomlString(value);
}

export function rulesToml(rows, config) {
  const lines = [
    "# set from the operator console",
    `bucket_count = ${config.bucket_count}`,
    `exact_limit_max = ${config.exact_limit_max}`,
  ];
  for (const row of rows) {
    lines.push("", "[[rules]]");
    for (const field of FIELDS) {
      const text = row[field.name].trim();
      lines.push(`${field.name} = ${field.integer ? tomlInteger(text) : tomlString(text)}`);
    }
    lines.push(`kind = ${tomlString(row.kind)}`);
  }
  for (const limit of config.attribute_limits) {
    lines.push("", "[[attribute_limits]]");
    lines.push(`user_id = ${tomlString(limit.user_id)}`, `srv = ${tomlString(limit.srv)}`);
    lines.push(`attribute = ${tomlString(limit.attribute)}`);
    if (limit.min !== null && limit.min !== undefined) lines.push(`min = ${tomlNumber(limit.min)}`);
    if (limit.max !== null && limit.max !== undefined) lines.push(`max = ${tomlNumber(limit.max)}`);
  }
  return `${lines.join("\n")}\n`;
}

function formRows() {
  return [...(rulesBody()?.children ?? [])].map((row) => {
    const values = {};
    for (const input of row.querySelectorAll("input, select")) values[input.name] = input.value;
    return values;
  });
}

async function save(event) {
  event.preventDefault();
  if (!inForce) return;
  say("thresholds-error", "");
  say("thresholds-status", "");
  try {
    const answer = await api("/admin/thresholds", {
      method: "PUT",
      body: rulesToml(formRows(), inForce),
      contentType: "application/toml",
    });
    await enter();
    say("thresholds-status", `Saved: ${answer.rules} rules in force.`);
  } catch (error) {
    if (error.status !== 401) say("thresholds-error", `Not saved. The gateway says: ${error.message}`);
  }
}
