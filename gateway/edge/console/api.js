// The admin API, called with the operator's token as a header (never a cookie or the URL),
// so a page on another site cannot act with it. The token lives in this tab's
// sessionStorage only.

const TOKEN_KEY = "duisgw-admin-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// path: "/admin/..." with its query; options: {method, json, body, contentType}.
export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token() ?? ""}` };
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (options.body !== undefined) {
    headers["Content-Type"] = options.contentType;
    body = options.body;
  }
  let response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      body,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch (error) {
    throw new ApiError(0, `the gateway did not answer (${error.message})`);
  }
  const text = await response.text();
  const type = response.headers.get("Content-Type") ?? "";
  let data = text;
  if (type.startsWith("application/json") && text) {
    try {
      data = JSON.parse(text);
    } catch {
      throw new ApiError(response.status, "the gateway's answer was not JSON");
    }
  }
  if (response.status === 401) {
    onUnauthorized(reason(data, text));
  }
  if (!response.ok) {
    throw new ApiError(response.status, `${response.status}: ${reason(data, text)}`);
  }
  return data;
}

function reason(data, text) {
  if (data && typeof data === "object" && typeof data.error === "string") {
    return data.error;
  }
  if (data && typeof data === "object" && typeof data.result === "string") {
    return data.result;
  }
  return text.trim() || "no reason given";
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      search.set(name, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
