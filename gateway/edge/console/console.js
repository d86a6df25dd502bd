// The console's entry point: the token prompt, then one page at a time by the URL's hash.
import { api, forgetToken, setToken, token, whenUnauthorized } from "./api.js";
import { byId, say } from "./dom.js";
import * as deliveries from "./deliveries.js";
import * as overview from "./overview.js";
import * as quarantine from "./quarantine.js";
import * as thresholds from "./thresholds.js";
import * as trust from "./trust.js";

const PAGES = { overview, quarantine, thresholds, deliveries, trust };
const DEFAULT_PAGE = "overview";
let current = null;

function showLogin(message) {
  if (current) PAGES[current].leave?.();
  current = null;
  forgetToken();
  for (const name of Object.keys(PAGES)) byId(`page-${name}`).hidden = true;
  byId("nav").hidden = true;
  byId("forget-token").hidden = true;
  byId("login").hidden = false;
  say("login-message", message);
  byId("token").value = "";
  byId("token").focus();
}

function pageFromHash() {
  const name = location.hash.replace(/^#/, "").split("/")[0];
  return Object.hasOwn(PAGES, name) ? name : DEFAULT_PAGE;
}

function showPage() {
  if (!token()) return;
  const name = pageFromHash();
  if (current && current !== name) PAGES[current].leave?.();
  byId("login").hidden = true;
  byId("nav").hidden = false;
  byId("forget-token").hidden = false;
  for (const other of Object.keys(PAGES)) byId(`page-${other}`).hidden = other !== name;
  for (const link of byId("nav").querySelectorAll("a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current !== name) {
    current = name;
    PAGES[name].enter();
  }
}

async function login(event) {
  event.preventDefault();
  const value = byId("token").value.trim();
  if (!value) {
    say("login-message", "Enter the admin token.");
    return;
  }
  setToken(value);
  try {
    await api("/admin/status");
  } catch (error) {
    if (error.status !== 401) showLogin(`The gateway could not be asked: ${error.message}`);
    return; // 401: whenUnauthorized has shown the prompt again with the gateway's reason
  }
  say("login-message", "");
  showPage();
  byId("main").focus();
}

whenUnauthorized((reason) => {
  showLogin(`The gateway refused the token: ${reason}`);
});

document.addEventListener("DOMContentLoaded", () => {
  for (const page of Object.values(PAGES)) page.setup();
  byId("login-form").addEventListener("submit", login);
  byId("forget-token").addEventListener("click", () => showLogin("Token forgotten."));
  window.addEventListener("hashchange", showPage);
  if (token()) showPage();
  else showLogin("");
});
