// Home: every project with its progress, storage, links and actions; the server's disk.

import { apiUrl, request } from "./api.js";
import { buildControls, updateControls } from "./controls.js";
import { ago, bytes, dateTime, plural } from "./format.js";
import { ownerHeaders, ownsProject } from "./owners.js";
import { cardPicture, openPreview } from "./preview.js";
import { patch, subscribe } from "./store.js";
import { $, confirmDialog, el, icon, message, setAttr, setText, show, toast } from "./ui.js";

const STATE_LABEL = {
  queued: "Queued",
  rendering: "Rendering",
  compositing: "Compositing",
  done: "Finished",
  error: "Error",
  paused: "Paused",
  cancelled: "Cancelled",
};

const cards = new Map(); // project id -> {root, parts, project}
let lastStatus = null;
let pendingHighlight = null;

function frameText(p) {
  if (p.frame_start === null || p.frame_start === undefined) return p.animation ? "scene frame range" : "scene frame";
  if (p.animation || p.frame_end !== p.frame_start) {
    const count = p.frame_end - p.frame_start + 1;
    return `frames ${p.frame_start}–${p.frame_end} (${count})`;
  }
  return `frame ${p.frame_start}`;
}

function subtitle(p) {
  const parts = [p.blend || null];
  if (p.width && p.height) parts.push(`${p.width}×${p.height}`);
  parts.push(frameText(p));
  if (p.tiles > 1) parts.push(`${p.tiles}×${p.tiles} chunks`);
  if (p.overscan) parts.push(`overscan ${p.overscan}px`);
  if (p.file_version) parts.push(`saved by Blender ${p.file_version}`);
  return parts.filter(Boolean).join(" · ");
}

const IMAGE_KINDS = {
  "image/png": "PNG image",
  "image/jpeg": "JPEG image",
  "image/tiff": "TIFF image",
  "image/x-exr": "OpenEXR image",
};

function resultKind(p) {
  if (p.result_type === "video/mp4") {
    return p.output_format ? `MP4 video, frames in ${p.output_format}` : "MP4 video";
  }
  if (p.result_type && p.output_format) return p.output_format;
  return IMAGE_KINDS[p.result_type] || p.result_type || "";
}

function buildCard(p) {
  const parts = {};
  parts.thumb = el("div", { class: "thumb" });
  parts.title = el("h2", { class: "project-title" });
  parts.badge = el("span", { class: "badge" });
  parts.sub = el("p", { class: "project-sub" });
  parts.barDone = el("div", { class: "progress-done" });
  parts.barActive = el("div", { class: "progress-active" });
  parts.bar = el(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": "0" },
    parts.barDone,
    parts.barActive,
  );
  parts.chunks = el("span", { class: "chunks" });
  parts.pct = el("span", { class: "pct" });
  parts.size = el("dd", { class: "size" });
  parts.created = el("dd", { class: "created" });
  parts.framesDone = el("dd");
  parts.framesDoneRow = el("div", {}, el("dt", {}, "Frames stitched"), parts.framesDone);
  parts.facts = el(
    "dl",
    { class: "facts" },
    el("div", {}, el("dt", {}, "Storage"), parts.size),
    el("div", {}, el("dt", {}, "Created"), parts.created),
    parts.framesDoneRow,
  );
  parts.warnings = el("ul", { class: "project-warnings" });
  parts.waiting = el("p", { class: "project-waiting" });
  parts.errorText = el("p", { class: "error-text" });
  parts.errorMore = el("pre", { class: "log", tabindex: "0" });
  parts.errorDetails = el("details", { class: "error-details" }, el("summary", {}, "Details"), parts.errorMore);
  parts.errorBody = el("div", { class: "error-body" }, parts.errorText, parts.errorDetails);
  parts.retry = el("button", { type: "button", class: "btn btn-small", onclick: () => retry(parts.project) }, "Retry");
  parts.error = el("div", { class: "project-error", role: "alert" }, parts.errorBody, parts.retry);
  parts.result = el("a", { target: "_blank", rel: "noopener" }, "Finished Result");
  parts.frames = el("a", {}, "Full-quality Frames");
  parts.raw = el("a", {}, "Raw Frames");
  parts.resultKind = el("span", { class: "muted result-kind" });
  parts.links = el("div", { class: "project-links" }, parts.result, parts.frames, parts.raw, parts.resultKind);
  parts.delete = el(
    "button",
    { type: "button", class: "btn btn-small btn-quiet delete", onclick: () => remove(parts.project) },
    icon("M4 6h12M8 6V4h4v2M6 6l1 10h6l1-10"),
    "Delete",
  );
  parts.retry.prepend(icon("M4 10a6 6 0 1 0 2-4.5M4 3v3.5h3.5"));
  parts.controls = buildControls(parts);

  const main = el(
    "div",
    { class: "project-main" },
    el("div", { class: "project-top" }, parts.title, parts.badge),
    parts.sub,
    parts.bar,
    el("div", { class: "progress-label" }, parts.chunks, parts.pct),
    parts.facts,
    parts.controls.root,
    parts.waiting,
    parts.warnings,
    parts.error,
    parts.links,
  );
  const root = el(
    "li",
    { class: "project", "data-project-id": p.id },
    parts.thumb,
    main,
    el("div", { class: "project-actions" }, parts.delete),
  );
  return { root, parts };
}

function updateThumb(parts, p) {
  const picture = cardPicture(p);
  const url = picture ? picture.url : null;
  const key = url || `none:${p.state === "error"}`;
  if (key === parts.thumbKey) return;
  parts.thumbKey = key;
  parts.thumb.classList.toggle("thumb-empty", !url);
  parts.thumb.classList.toggle("thumb-live", Boolean(picture && picture.live));
  if (url) {
    const title = p.title || p.id;
    const alt = picture.live ? `${title} as rendered so far` : `Latest rendered frame of ${title}`;
    const img = el("img", { src: url, alt });
    const open = el(
      "button",
      {
        type: "button",
        class: "thumb-open",
        "aria-label": `Open a larger preview of ${title}`,
        onclick: () => openPreview(parts.project),
      },
      img,
    );
    if (parts.thumb.querySelector("img")) {
      // swap once the newer picture has loaded, without a blank flash in between
      img.addEventListener("load", () => parts.thumbKey === key && parts.thumb.replaceChildren(open), { once: true });
    } else {
      parts.thumb.replaceChildren(open);
    }
  } else {
    parts.thumb.replaceChildren(el("span", {}, p.state === "error" ? "No preview" : "Preview after the first chunk"));
  }
}

function updateCard(card, p, now) {
  const { root, parts } = card;
  parts.project = p;
  const title = p.title || p.blend || p.id;
  root.classList.toggle("is-done", p.state === "done");
  root.classList.toggle("is-error", p.state === "error");
  setAttr(root, "data-state", p.state);
  updateThumb(parts, p);
  setText(parts.title, title);
  setText(parts.badge, STATE_LABEL[p.state] || p.state);
  parts.badge.className = `badge badge-${p.state}`;
  setText(parts.sub, subtitle(p));

  const total = Number(p.chunks_total) || 0;
  const done = Math.min(Number(p.chunks_done) || 0, total || Infinity);
  const active = Math.max(0, Math.min(Number(p.chunks_rendering) || 0, total - done));
  const pct = total ? Math.floor((100 * done) / total) : p.state === "done" ? 100 : 0;
  parts.barDone.style.width = `${total ? (100 * done) / total : pct}%`;
  parts.barActive.style.left = parts.barDone.style.width;
  parts.barActive.style.width = `${total ? (100 * active) / total : 0}%`;
  setAttr(parts.bar, "aria-valuemax", total || 100);
  setAttr(parts.bar, "aria-valuenow", total ? done : pct);
  setAttr(parts.bar, "aria-valuetext", total ? `${done} of ${total} chunks done` : "not started");
  setAttr(parts.bar, "aria-label", `Progress of ${title}`);
  let chunkText;
  if (!total) chunkText = p.state === "error" ? "Not rendered" : "Waiting to be read by a worker…";
  else chunkText = `${done} / ${total} chunks done`;
  if (active) chunkText += ` · ${active} rendering now`;
  if (p.state === "compositing") chunkText += " · stitching frames…";
  setText(parts.chunks, chunkText);
  setText(parts.pct, total || p.state === "done" ? `${pct}%` : "");

  setText(parts.size, bytes(p.size));
  setText(parts.created, `${dateTime(p.created)} (${ago(p.created, now)})`);
  setAttr(parts.created, "title", p.created || null);
  const frames = p.frame_start !== null && p.frame_end !== null ? p.frame_end - p.frame_start + 1 : null;
  show(parts.framesDoneRow, Boolean(p.animation));
  setText(parts.framesDone, frames ? `${p.frames_done ?? 0} / ${frames}` : `${p.frames_done ?? 0}`);

  const warnings = Array.isArray(p.warnings) ? [...p.warnings] : [];
  const blocked = Array.isArray(p.blocklist) ? p.blocklist : [];
  if (blocked.length) {
    warnings.push(`Not given to ${blocked.join(", ")} any more: it failed too many chunks of this project.`);
  }
  const warningKey = warnings.join("\n");
  if (parts.warningKey !== warningKey) {
    parts.warningKey = warningKey;
    parts.warnings.replaceChildren(...warnings.map((w) => el("li", {}, w)));
  }
  show(parts.warnings, warnings.length > 0);

  const waiting = !["done", "error", "cancelled"].includes(p.state) ? p.waiting : null;
  setText(parts.waiting, waiting ? `Waiting: ${waiting}` : "");
  show(parts.waiting, Boolean(waiting));

  show(parts.error, p.state === "error");
  // a Blender traceback: its first line says it all, the rest is behind "Details"
  const errorLines = String(p.error || "The render failed.").split("\n").filter((l) => l.trim());
  setText(parts.errorText, errorLines[0]);
  setText(parts.errorMore, errorLines.join("\n"));
  show(parts.errorDetails, errorLines.length > 1);
  setAttr(parts.retry, "aria-label", `Retry ${title}`);

  const hasLinks = Boolean(p.result_url || p.raw_url);
  show(parts.links, hasLinks);
  show(parts.result, Boolean(p.result_url));
  show(parts.raw, Boolean(p.raw_url));
  show(parts.frames, Boolean(p.frames_url));
  setAttr(parts.frames, "href", apiUrl(p.frames_url));
  setAttr(parts.frames, "download", p.frames_url ? `${p.id}-frames.zip` : null);
  setAttr(parts.result, "href", apiUrl(p.result_url));
  setAttr(parts.raw, "href", apiUrl(p.raw_url));
  setAttr(parts.raw, "download", p.raw_url ? `${p.id}-raw-frames.zip` : null);
  setText(parts.resultKind, resultKind(p));

  setAttr(parts.delete, "aria-label", `Delete ${title}`);
  updateControls(parts.controls, p);
}

function renderDisk(disk) {
  const meter = $("#disk-meter");
  if (!disk || !disk.total) {
    for (const id of ["disk-data", "disk-used", "disk-free", "disk-total"]) setText($(`#${id}`), "–");
    return;
  }
  const data = Number(disk.data) || 0;
  const used = Number(disk.used) || 0;
  const total = Number(disk.total);
  const other = Math.max(0, used - data);
  $("#disk-bar-data").style.width = `${(100 * Math.min(data, used)) / total}%`;
  $("#disk-bar-other").style.width = `${(100 * other) / total}%`;
  const pct = Math.round((100 * used) / total);
  setAttr(meter, "aria-valuenow", pct);
  setAttr(meter, "aria-valuetext", `${pct}% used: ${bytes(used)} of ${bytes(total)}, ${bytes(disk.free)} free`);
  setText($("#disk-data"), disk.data === undefined ? "–" : bytes(data));
  setText($("#disk-used"), bytes(used));
  setText($("#disk-free"), bytes(disk.free));
  setText($("#disk-total"), bytes(total));
}

function summary(status) {
  const projects = status.projects;
  const counts = {};
  for (const p of projects) counts[p.state] = (counts[p.state] || 0) + 1;
  const parts = [plural(projects.length, "project")];
  for (const state of ["rendering", "compositing", "queued", "paused", "error", "cancelled", "done"]) {
    if (counts[state]) parts.push(`${counts[state]} ${STATE_LABEL[state].toLowerCase()}`);
  }
  const online = status.nodes.filter((n) => n.online !== false && n.state !== "offline").length;
  parts.push(`${plural(online, "worker")} online`);
  if (typeof status.throughput === "number" && status.throughput > 0) {
    parts.push(`${Math.round(status.throughput)} chunks in the last hour`);
  }
  return parts.join(" · ");
}

function render(status) {
  lastStatus = status;
  const list = $("#projects");
  const now = Date.now();
  setText($("#home-summary"), summary(status));
  renderDisk(status.disk);
  show($("#projects-empty"), status.projects.length === 0);

  // newest first: what was just uploaded is at the top
  const projects = status.projects
    .map((p, i) => [p, i])
    .sort(([a, i], [b, j]) => String(b.created || "").localeCompare(String(a.created || "")) || j - i)
    .map(([p]) => p);
  const seen = new Set();
  let previous = null;
  for (const p of projects) {
    seen.add(p.id);
    let card = cards.get(p.id);
    if (!card) {
      card = buildCard(p);
      cards.set(p.id, card);
    }
    updateCard(card, p, now);
    // keep DOM order equal to the server's order, moving nodes only when needed
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== card.root) list.insertBefore(card.root, expected);
    previous = card.root;
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  if (pendingHighlight && cards.has(pendingHighlight)) {
    const root = cards.get(pendingHighlight).root;
    pendingHighlight = null;
    root.classList.add("flash");
    root.scrollIntoView({ block: "nearest" });
    setTimeout(() => root.classList.remove("flash"), 2500);
  }
}

async function retry(p) {
  try {
    let password = "";
    if (!ownsProject(p.id)) {
      password = window.prompt(`“${p.title || p.id}” was uploaded from another browser: admin password?`) || "";
      if (!password) return;
    }
    const fresh = await request("POST", `/api/projects/${encodeURIComponent(p.id)}/retry`, {
      headers: ownerHeaders(p.id, password),
    });
    if (fresh && fresh.id === p.id) {
      patch((s) => {
        s.projects = s.projects.map((x) => (x.id === p.id ? fresh : x));
      });
    }
    toast(`Retrying “${p.title || p.id}”.`);
  } catch (err) {
    toast(`Could not retry “${p.title || p.id}”: ${err.message}`, "error");
  }
}

async function remove(p) {
  const dialog = $("#delete-dialog");
  const title = p.title || p.id;
  setText($("#delete-dialog-h"), `Delete “${title}”?`);
  let text;
  if (p.state === "done") {
    text =
      `Its upload, the Finished Result and the Raw Frames (${bytes(p.size)}) will be deleted from the server. ` +
      "Download what you need first.";
  } else {
    text =
      `All progress on this render will be lost: ${p.chunks_done || 0} of ${p.chunks_total || "?"} chunks ` +
      `are done, and the upload and rendered chunks (${bytes(p.size)}) are deleted from the server.`;
  }
  setText($("#delete-dialog-text"), text);
  const password = $("#delete-password");
  password.value = "";
  show($("#delete-password-row"), !ownsProject(p.id));
  let freed = null;
  const confirmed = await confirmDialog(dialog, {
    errorBox: $("#delete-dialog-error"),
    confirmButton: $("#delete-confirm"),
    onConfirm: async () => {
      try {
        const answer = await request("DELETE", `/api/projects/${encodeURIComponent(p.id)}`, {
          headers: ownerHeaders(p.id, password.value),
        });
        freed = answer && answer.freed;
      } catch (err) {
        if (err.status === 404) return; // already gone
        if (err.status === 403) show($("#delete-password-row"), true);
        throw err;
      }
    },
  });
  if (!confirmed) return;
  patch((s) => {
    s.projects = s.projects.filter((x) => x.id !== p.id);
  });
  toast(`Deleted “${title}”${freed ? `, freed ${bytes(freed)}` : ""}.`);
  $("#home-h").focus();
}

/** Marks a project to be highlighted when it shows up (after an upload). */
export function highlight(id) {
  pendingHighlight = id;
  if (lastStatus) render(lastStatus);
}

export function initHome() {
  message($("#delete-dialog-error"), "");
  subscribe(render);
  // relative times ("3 min ago") age without any network traffic
  setInterval(() => {
    if (lastStatus && !$("#page-home").hidden) render(lastStatus);
  }, 30000);
}
