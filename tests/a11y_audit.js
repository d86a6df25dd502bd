// A small accessibility audit of the page as shown, run in the page by
// tests/test_console_a11y.py (page.evaluate): no dependency, a few rules. It returns
// {violations: [{rule, selector, detail}], checked: {controls, buttons, links}}. Names are computed after WAI-ARIA's "Accessible Name and
// Description Computation", cut down to what the console uses: aria-labelledby, then
// aria-label, then an associated <label> (for a form control) or the content (for a
// button or link), then title. A placeholder is not a name.
() => {
  const violations = [];
  const report = (rule, element, detail = "") =>
    violations.push({ rule, selector: selectorOf(element), detail });

  function uniqueId(element) {
    return element.id && document.querySelectorAll(`#${CSS.escape(element.id)}`).length === 1;
  }

  // A CSS selector for the element: its id when that is unique, else a child path
  // (with :nth-of-type where there are siblings of the same tag) from the nearest
  // ancestor with a unique id, or from <html>.
  function selectorOf(element) {
    const parts = [];
    for (let node = element; node && node.nodeType === Node.ELEMENT_NODE; node = node.parentElement) {
      if (uniqueId(node)) {
        parts.unshift(`#${CSS.escape(node.id)}`);
        break;
      }
      let part = node.localName;
      const parent = node.parentElement;
      if (parent) {
        const same = [...parent.children].filter((c) => c.localName === node.localName);
        if (same.length > 1) part += `:nth-of-type(${same.indexOf(node) + 1})`;
      }
      parts.unshift(part);
    }
    return parts.join(" > ");
  }

  // Shown: rendered, so in the accessibility tree (not under [hidden], display:none,
  // visibility:hidden, a closed <dialog> or aria-hidden="true").
  function shown(element) {
    if (element.closest("[aria-hidden=true]")) return false;
    return element.checkVisibility({ visibilityProperty: true });
  }

  // The text a subtree gives to a name: its text, an image's alt, a nested aria-label;
  // hidden parts left out unless the whole subtree was referenced by aria-labelledby.
  function contentText(node, referenced = false) {
    if (node.nodeType === Node.TEXT_NODE) return node.data;
    if (node.nodeType !== Node.ELEMENT_NODE) return "";
    if (!referenced && !shown(node)) return "";
    const label = node.getAttribute("aria-label");
    if (label && label.trim()) return label;
    if (node.localName === "img" || (node.localName === "input" && node.type === "image")) {
      return node.getAttribute("alt") ?? "";
    }
    if (node.localName === "input" || node.localName === "textarea" || node.localName === "select") {
      return ""; // a control inside a label does not lend its value here
    }
    return [...node.childNodes].map((child) => contentText(child, referenced)).join(" ");
  }

  const clean = (text) => (text ?? "").replace(/\s+/g, " ").trim();

  // [name, where it came from]; name "" when there is none.
  function accessibleName(element, fromContent) {
    const labelledby = element.getAttribute("aria-labelledby");
    if (labelledby !== null) {
      const text = clean(labelledby.split(/\s+/).map((id) => {
        const target = id && document.getElementById(id);
        return target ? contentText(target, true) : "";
      }).join(" "));
      if (text) return [text, "aria-labelledby"];
    }
    const label = clean(element.getAttribute("aria-label"));
    if (label) return [label, "aria-label"];
    if (element.labels && element.labels.length) {
      const text = clean([...element.labels].map((l) => contentText(l)).join(" "));
      if (text) return [text, "label"];
    }
    if (element.localName === "input" && ["submit", "reset", "button"].includes(element.type)) {
      const value = clean(element.value) || (element.type === "button" ? "" : element.type);
      if (value) return [value, "value"];
    }
    if (fromContent) {
      const text = clean(contentText(element));
      if (text) return [text, "content"];
    }
    const title = clean(element.getAttribute("title"));
    if (title) return [title, "title"];
    return ["", "none"];
  }

  const all = (selector) => [...document.querySelectorAll(selector)];

  // The page: a language, exactly one level-one heading shown, unique ids.
  if (!clean(document.documentElement.getAttribute("lang"))) {
    report("html-lang", document.documentElement, "<html> has no lang attribute");
  }
  const headings = all("h1, [role=heading][aria-level='1']").filter(shown);
  if (headings.length !== 1) {
    const where = headings.length ? headings : [document.body];
    for (const heading of where) report("one-h1", heading, `${headings.length} level-one headings shown`);
  }
  const seen = new Map();
  for (const element of all("[id]")) {
    seen.set(element.id, (seen.get(element.id) ?? 0) + 1);
  }
  for (const [id, count] of seen) {
    if (count > 1) {
      for (const element of all(`[id="${CSS.escape(id)}"]`)) report("unique-id", element, `id "${id}" is used ${count} times`);
    }
  }
  // Every id a label or an ARIA relation names exists.
  for (const element of all("label[for]")) {
    if (!document.getElementById(element.htmlFor)) report("idref", element, `for="${element.htmlFor}" names no element`);
  }
  for (const attribute of ["aria-labelledby", "aria-describedby", "aria-controls"]) {
    for (const element of all(`[${attribute}]`)) {
      for (const id of element.getAttribute(attribute).split(/\s+/).filter(Boolean)) {
        if (!document.getElementById(id)) report("idref", element, `${attribute} names "${id}", no such element`);
      }
    }
  }

  // Form controls: a name from a label, aria-label or aria-labelledby (not a placeholder).
  const controls = all("input:not([type=hidden]):not([type=submit]):not([type=reset]):not([type=button]):not([type=image]), select, textarea");
  const checked = { controls: 0, buttons: 0, links: 0 };
  for (const control of controls.filter(shown)) {
    checked.controls += 1;
    const [name] = accessibleName(control, false);
    if (!name) report("control-name", control, `<${control.localName}> has no label, aria-label or aria-labelledby`);
  }
  // Buttons and links: a name, from their content or a label.
  const buttons = all("button, input[type=submit], input[type=reset], input[type=button], input[type=image], summary, [role=button]");
  for (const button of buttons.filter(shown)) {
    checked.buttons += 1;
    const [name] = accessibleName(button, true);
    if (!name) report("button-name", button, "a button with no accessible name");
  }
  for (const link of all("a[href], [role=link]").filter(shown)) {
    checked.links += 1;
    const [name] = accessibleName(link, true);
    if (!name) report("link-name", link, "a link with no accessible name");
  }
  // An element that says it is a button or link can be reached by keyboard.
  for (const element of all("[role=button], [role=link]").filter(shown)) {
    if (element.tabIndex < 0) report("focusable", element, `role=${element.getAttribute("role")} but not in the tab order`);
  }
  // Images: an alt attribute (empty for decoration).
  for (const image of all("img, input[type=image], area").filter(shown)) {
    if (!image.hasAttribute("alt")) report("image-alt", image, "no alt attribute");
  }
  for (const image of all("[role=img]").filter(shown)) {
    const [name] = accessibleName(image, false);
    if (!name && !image.querySelector(":scope > title")) report("image-alt", image, "role=img with no name");
  }
  return { violations, checked };
}
