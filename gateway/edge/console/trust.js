// Trust and registry: every Organisation certificate with its expiry, each User's signing
// certificate under each DUIS version served (or why it has none), files refused, reload.
import { api } from "./api.js";
import { badge, byId, el, facts, replace, say, table, when } from "./dom.js";

const SOON_DAYS = 90;
const DAY_MS = 86400000;

export function setup() {
  byId("trust-reload").addEventListener("click", reload);
}

export function enter() {
  load();
}

async function reload() {
  say("trust-status", "");
  say("trust-error", "");
  try {
    const answer = await api("/admin/reload", { method: "POST" });
    say("trust-status", answer.result);
  } catch (error) {
    if (error.status !== 401) say("trust-error", `Reload failed: ${error.message}`);
  }
  await load();
}

async function load() {
  let status;
  let signers;
  let certificates;
  try {
    [status, signers, certificates] = await Promise.all([
      api("/admin/status"),
      api("/admin/trust/signers"),
      api("/admin/trust/certificates"),
    ]);
  } catch (error) {
    if (error.status !== 401) say("trust-error", `Could not read trust and registry: ${error.message}`);
    return;
  }
  const retired = Object.entries(status.retired_versions).map(([v, d]) => `${v} (from ${d})`);
  const missing = signers.filter((u) => u.missing_signer);
  facts(byId("trust-summary"), [
    ["DUIS versions served", status.versions.join(", ")],
    ["Retired versions", retired.join(", ")],
    ["Users", status.users],
    ["Users without a usable signer", missing.length ? badge(`${missing.length}`, "bad") : badge("0", "good")],
    ["Devices", status.devices],
    ["Certificates loaded", status.certificates],
  ]);
  renderSigners(signers);
  replace(
    byId("trust-skipped"),
    table(
      "Certificate files not loaded, with the reason",
      [
        { label: "File", value: (s) => el("span", { class: "mono", text: s.file }) },
        { label: "Reason", value: (s) => s.reason },
      ],
      status.certificates_skipped,
      "None.",
    ),
  );
  renderCertificates(certificates);
}

function renderSigners(users) {
  const versions = users.length ? users[0].versions.map((v) => v.version) : [];
  const signer = (choice) => {
    if (!choice.usable) return el("span", {}, badge("none", "bad"), " ", choice.problem);
    return el("span", {}, badge(`OU ${choice.role_code}`, "good"), ` until ${when(choice.not_after).slice(0, 10)}`);
  };
  replace(
    byId("trust-signers"),
    table(
      "Users without a usable signer first; each version's signer rule as its catalogue gives it",
      [
        { label: "User ID", value: (u) => el("span", { class: "mono", text: u.user_id }) },
        { label: "Party", value: (u) => u.party },
        { label: "Status", value: (u) => u.status },
        { label: "Roles", value: (u) => u.roles.join(", ") || "none (sends no requests)" },
        ...versions.map((version, index) => ({ label: `DUIS ${version}`, value: (u) => signer(u.versions[index]) })),
      ],
      [...users].sort((a, b) => Number(b.missing_signer) - Number(a.missing_signer)),
      "No Users registered.",
    ),
  );
}

function expiry(certificate, now) {
  if (certificate.validity === "revoked") return badge("revoked", "bad");
  if (certificate.validity === "expired") return badge("expired", "bad");
  if (certificate.validity === "not_yet_valid") return badge("not yet valid", "warn");
  const days = Math.floor((new Date(certificate.not_after).getTime() - now) / DAY_MS);
  return days < SOON_DAYS ? badge(`${days} days left`, "warn") : badge("valid", "good");
}

function renderCertificates(certificates) {
  const now = Date.now();
  replace(
    byId("trust-certificates"),
    table(
      "Organisation certificates by subject, role and key usage",
      [
        { label: "Subject EUI-64", value: (c) => el("span", { class: "mono", text: c.subject_eui64 }) },
        { label: "Role (OU)", value: (c) => `${c.role_code} ${c.role_name}` },
        { label: "Key usage", value: (c) => c.key_usage },
        { label: "Serial", value: (c) => el("span", { class: "serial", text: c.serial }) },
        { label: "Issuer", value: (c) => c.issuer },
        { label: "Not before", value: (c) => when(c.not_before).slice(0, 10), nowrap: true },
        { label: "Not after", value: (c) => when(c.not_after).slice(0, 10), nowrap: true },
        { label: "Validity", value: (c) => expiry(c, now) },
        { label: "Trust", value: (c) => (c.trust === "chained" ? "anchored" : "pinned") },
        { label: "File", value: (c) => c.file },
      ],
      certificates,
      "No certificates loaded.",
    ),
  );
}
