// Small DOM helpers shared by the pages.

/** el("div", {class: "x", onclick: fn}, child, "text", ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** A stroked 20×20 icon from one SVG path; decorative (hidden from assistive technology). */
export function icon(path) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("viewBox", "0 0 20 20");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const shape = document.createElementNS(SVG_NS, "path");
  shape.setAttribute("d", path);
  svg.append(shape);
  return svg;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Sets textContent only when it changed (keeps selections and avoids layout work). */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function setAttr(node, name, value) {
  if (value === null || value === undefined || value === false) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else {
    const v = value === true ? "" : String(value);
    if (node.getAttribute(name) !== v) node.setAttribute(name, v);
  }
}

export function show(node, visible) {
  if (node.hidden === visible) node.hidden = !visible;
}

/** Shows (or clears, with an empty message) the error under a form field. */
export function fieldError(input, message) {
  const box = document.getElementById(`${input.id}-err`);
  if (message) {
    input.setAttribute("aria-invalid", "true");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  } else {
    input.removeAttribute("aria-invalid");
    if (box) {
      box.textContent = "";
      box.hidden = true;
    }
  }
}

export function message(box, text) {
  box.textContent = text || "";
  box.hidden = !text;
}

/** A short notice in the corner; `kind` is "ok" or "error". */
export function toast(text, kind = "ok", timeout = 7000) {
  const host = document.getElementById("toasts");
  const close = el("button", { type: "button", "aria-label": "Dismiss" }, "×");
  const item = el(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    el("p", {}, text),
    close,
  );
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  host.append(item);
  if (timeout) setTimeout(remove, timeout);
  return item;
}

/**
 * Opens a <dialog> and resolves to true when the user confirms.
 * `onConfirm` (optional, async) runs while the dialog stays open; if it throws, its message is
 * shown in `errorBox` and the dialog stays open so the user can retry or cancel.
 */
export function confirmDialog(dialog, { onConfirm, errorBox, confirmButton } = {}) {
  return new Promise((resolve) => {
    const form = dialog.querySelector("form");
    if (errorBox) message(errorBox, "");
    let busy = false;
    const finish = (result) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const onClose = () => finish(false);
    const onSubmit = async (event) => {
      const confirmed = event.submitter && event.submitter.value === "confirm";
      if (!confirmed || !onConfirm) {
        event.preventDefault();
        finish(confirmed);
        return;
      }
      event.preventDefault();
      if (busy) return;
      busy = true;
      if (confirmButton) confirmButton.disabled = true;
      try {
        await onConfirm();
        finish(true);
      } catch (err) {
        if (errorBox) message(errorBox, err.message || String(err));
      } finally {
        busy = false;
        if (confirmButton) confirmButton.disabled = false;
      }
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
  });
}
