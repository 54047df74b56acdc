// The live preview: a project's frame as stitched so far (GET /api/projects/{id}/preview), in
// the project card's thumbnail while it renders and larger in a dialog. The server sends a new
// status event whenever a chunk lands; the preview's address changes with the chunks done, so
// the picture is fetched again exactly then (the server's ETag spares a rebuild otherwise).

import { apiUrl } from "./api.js";
import { subscribe } from "./store.js";
import { $, setText } from "./ui.js";

let shown = null; // {id, key, url}: the project in the dialog, what it showed, its object URL
let loading = 0;

/** The picture a project's card shows: the growing preview while there is one to grow, the
 * latest stitched frame once it is done; null before any chunk is in. */
export function cardPicture(p) {
  const done = Number(p.chunks_done) || 0;
  if (p.state !== "done" && done > 0) {
    return { url: `${previewPath(p.id)}?v=${done}-${p.frames_done ?? 0}`, live: true };
  }
  if (p.thumbnail_url) {
    return { url: `${apiUrl(p.thumbnail_url)}?v=${p.frames_done ?? 0}-${p.state}`, live: false };
  }
  return null;
}

function previewPath(id) {
  return apiUrl(`/api/projects/${encodeURIComponent(id)}/preview`);
}

function versionOf(p) {
  return `${p.chunks_done ?? 0}-${p.frames_done ?? 0}-${p.state}`;
}

/** Opens the larger preview of project `p`; Esc or Close shuts it. */
export function openPreview(p) {
  const dialog = $("#preview-dialog");
  setText($("#preview-dialog-h"), `Preview of “${p.title || p.id}”`);
  setText($("#preview-dialog-text"), "Loading…");
  shown = { id: p.id, key: null, url: null };
  if (!dialog.open) dialog.showModal();
  load(p);
}

async function load(p) {
  const key = versionOf(p);
  if (!shown || shown.id !== p.id || shown.key === key) return;
  shown.key = key;
  const ticket = ++loading;
  const img = $("#preview-dialog-img");
  let response;
  try {
    response = await fetch(`${previewPath(p.id)}?v=${encodeURIComponent(key)}`, { cache: "no-cache" });
  } catch {
    if (ticket === loading) setText($("#preview-dialog-text"), "The server could not be reached.");
    return;
  }
  if (ticket !== loading || !shown || shown.id !== p.id) return;
  if (!response.ok) {
    img.hidden = true;
    setText($("#preview-dialog-text"), response.status === 404 ? "Nothing rendered yet." : `The server answered ${response.status}.`);
    return;
  }
  const frame = response.headers.get("X-Preview-Frame");
  const [inside, total] = (response.headers.get("X-Preview-Chunks") || "").split("/");
  const blob = await response.blob();
  if (ticket !== loading || !shown || shown.id !== p.id) return;
  const url = URL.createObjectURL(blob);
  if (shown.url) URL.revokeObjectURL(shown.url);
  shown.url = url;
  img.addEventListener(
    "load",
    () => img.naturalHeight && img.style.setProperty("--ratio", String(img.naturalWidth / img.naturalHeight)),
    { once: true },
  );
  img.src = url;
  img.alt = `Frame ${frame} of “${p.title || p.id}” as rendered so far`;
  img.hidden = false;
  const parts = [];
  if (frame) parts.push(`Frame ${frame}`);
  if (total) parts.push(`${inside} / ${total} chunks in`);
  if (p.state !== "done" && inside !== total) parts.push("updates as chunks land");
  setText($("#preview-dialog-text"), parts.join(" · "));
}

function closed() {
  loading++;
  if (shown && shown.url) URL.revokeObjectURL(shown.url);
  shown = null;
  const img = $("#preview-dialog-img");
  img.removeAttribute("src");
  img.hidden = true;
}

export function initPreview() {
  const dialog = $("#preview-dialog");
  dialog.addEventListener("close", closed);
  // a click on the backdrop (outside the dialog's box) closes it too
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  subscribe((status) => {
    if (!shown || !dialog.open) return;
    const p = status.projects.find((x) => x.id === shown.id);
    if (!p) dialog.close();
    else load(p);
  });
}
