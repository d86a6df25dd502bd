// Building the page from data: text only ever goes in through textContent, never
// innerHTML, so a User ID, a reason or a rules comment holding markup stays text.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

export function replace(container, ...children) {
  container.replaceChildren(...children.filter((c) => c !== undefined && c !== null));
}

export function say(id, text) {
  byId(id).textContent = text ?? "";
}

// columns: [{label, value: row => text|Node, num?: true, nowrap?: true}]; the caption
// names the table for screen readers. Wide tables scroll inside their box.
export function table(caption, columns, rows, emptyText = "none") {
  if (rows.length === 0) {
    return el("p", { class: "empty", text: emptyText });
  }
  const classes = (c) => [c.num ? "num" : "", c.nowrap ? "nowrap" : ""].join(" ").trim() || null;
  const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", class: classes(c), text: c.label })));
  const body = rows.map((row) =>
    el("tr", {}, ...columns.map((c) => {
      const value = c.value(row);
      return el("td", { class: classes(c) }, value instanceof Node ? value : text(value));
    })),
  );
  const grid = el("table", {}, el("caption", { text: caption }), el("thead", {}, head), el("tbody", {}, ...body));
  return el("div", { class: "table-box" }, grid);
}

export function facts(container, pairs) {
  replace(container, ...pairs.flatMap(([label, value]) => [
    el("dt", { text: label }),
    el("dd", {}, value instanceof Node ? value : text(value)),
  ]));
}

export function text(value) {
  return value === undefined || value === null || value === "" ? "—" : String(value);
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace("T", "\u00a0").replace(/\.\d+Z$/, "Z");
}

export function age(iso, now = Date.now()) {
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function badge(label, kind) {
  return el("span", { class: `badge ${kind}`, text: label });
}

// A confirmation with a reason, in the page's <dialog>: resolves to the reason, or null.
export function confirmWithReason(title, message, action) {
  const dialog = byId("confirm");
  say("confirm-title", title);
  say("confirm-text", message);
  say("confirm-ok", action);
  const reason = byId("confirm-reason");
  reason.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? reason.value : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    reason.focus();
  });
}
