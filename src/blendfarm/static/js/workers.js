// Workers: every node, what it renders now, its Blender, its recent log.

import { API, request } from "./api.js";
import { ago, dateTime, duration, plural } from "./format.js";
import { subscribe } from "./store.js";
import { $, el, setAttr, setText, show, toast } from "./ui.js";

const cards = new Map(); // node name -> {root, parts}
let lastStatus = null;
const SHORT_LOG = 4;

function isOnline(n) {
  return n.online !== false && n.state !== "offline";
}

function buildCard() {
  const parts = {};
  parts.name = el("h2", { class: "node-name" });
  parts.badge = el("span", { class: "badge" });
  parts.grid = el("span", { class: "chunk-grid", "aria-hidden": "true" });
  parts.nowText = el("span", { class: "node-now-text" });
  parts.now = el("p", { class: "node-now" }, parts.grid, parts.nowText);
  parts.version = el("dd");
  parts.slots = el("dd", { class: "node-slots" });
  parts.since = el("dd");
  parts.sinceLabel = el("dt", {}, "Online for");
  parts.done = el("dd", { class: "node-chunks-done" });
  parts.seen = el("dd");
  parts.seenRow = el("div", {}, el("dt", {}, "Last seen"), parts.seen);
  parts.facts = el(
    "dl",
    { class: "facts" },
    el("div", {}, el("dt", {}, "Blender"), parts.version),
    el("div", {}, el("dt", {}, "Renders on"), parts.slots),
    el("div", {}, parts.sinceLabel, parts.since),
    el("div", {}, el("dt", {}, "Chunks done"), parts.done),
    parts.seenRow,
  );
  parts.logShort = el("pre", { class: "log log-short", tabindex: "0" });
  parts.logFull = el("pre", { class: "log", tabindex: "0" });
  parts.summary = el("summary", {}, "Full recent log");
  parts.details = el("details", { class: "log-full" }, parts.summary, parts.logFull);
  // opened: read the node's whole recent log once, and again when its tail moves on
  parts.details.addEventListener("toggle", () => {
    if (parts.details.open) loadFullLog(parts);
  });
  parts.tags = el("p", { class: "node-tags muted" });
  parts.toggle = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Disable");
  parts.toggle.addEventListener("click", () => toggleNode(parts));
  const root = el(
    "li",
    { class: "node" },
    el("div", { class: "node-top" }, parts.name, parts.badge, parts.toggle),
    parts.now,
    parts.tags,
    parts.facts,
    parts.logShort,
    parts.details,
  );
  return { root, parts };
}

function drawGrid(grid, tiles, row, col) {
  const key = `${tiles}:${row}:${col}`;
  if (grid.dataset.key === key) return;
  grid.dataset.key = key;
  grid.replaceChildren();
  if (!tiles || tiles < 2 || tiles > 8) {
    grid.hidden = true;
    return;
  }
  grid.hidden = false;
  grid.style.gridTemplateColumns = `repeat(${tiles}, 9px)`;
  for (let r = 0; r < tiles; r++) {
    for (let c = 0; c < tiles; c++) grid.append(el("span", { class: r === row && c === col ? "on" : "" }));
  }
}

async function loadFullLog(parts) {
  if (parts.fullLoading || !parts.name.textContent) return;
  parts.fullLoading = true;
  try {
    const data = await request("GET", `/api/nodes/${encodeURIComponent(parts.name.textContent)}/log`);
    parts.fullLines = (data && data.lines) || [];
    keepBottom(parts.logFull, parts.fullLines.join("\n") || "(no log yet)");
    setText(parts.summary, `Full recent log (${plural(parts.fullLines.length, "line")})`);
  } catch {
    /* the tail from the status stays shown */
  } finally {
    parts.fullLoading = false;
  }
}

function keepBottom(pre, text) {
  if (pre.textContent === text) return;
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
  pre.textContent = text;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

async function toggleNode(parts) {
  const n = parts.node;
  const verb = n.disabled ? "enable" : "disable";
  const password = window.prompt(`Admin password to ${verb} ${n.name}?`) || "";
  if (!password) return;
  try {
    await request("POST", `/api/nodes/${encodeURIComponent(n.name)}/${verb}`, {
      headers: { "X-Blendfarm-Password": password },
    });
    toast(`${n.name} is ${verb}d.`);
  } catch (err) {
    toast(`Could not ${verb} ${n.name}: ${err.message}`, "error");
  }
}

function updateCard(card, n, projects, now) {
  const { root, parts } = card;
  const online = isOnline(n);
  const cur = online ? n.current : null;
  const state = online ? (cur ? "rendering" : n.state || "idle") : "offline";
  root.classList.toggle("is-offline", !online);
  root.classList.toggle("is-rendering", Boolean(cur));
  setAttr(root, "data-node", n.name);
  setAttr(root, "data-state", state);
  setText(parts.name, n.name);
  setText(parts.badge, online ? (cur ? "Rendering" : "Online · idle") : "Offline");
  parts.badge.className = `badge badge-${online ? (cur ? "rendering" : "online") : "offline"}`;
  if (online && !cur && (n.state === "disabled" || n.state === "resting")) {
    setText(parts.badge, n.state === "disabled" ? "Disabled" : "Resting (sleep hours)");
    parts.badge.className = `badge badge-${n.state}`;
  }
  parts.node = n;
  setText(parts.toggle, n.disabled ? "Enable" : "Disable");
  setAttr(parts.toggle, "aria-label", `${n.disabled ? "Enable" : "Disable"} ${n.name}`);
  const tags = (n.info && Array.isArray(n.info.tags) && n.info.tags) || [];
  const schedule = (n.info && n.info.schedule) || "";
  const about = [tags.length ? `Tags: ${tags.join(", ")}` : "", schedule ? `Sleeps: ${schedule}` : ""];
  setText(parts.tags, about.filter(Boolean).join(" · "));
  show(parts.tags, Boolean(tags.length || schedule));

  if (cur) {
    const project = projects.get(cur.project);
    const title = cur.title || (project && project.title) || cur.project;
    const nowKey = JSON.stringify([cur, project && project.tiles, project && project.title]);
    if (parts.nowKey === nowKey) {
      /* unchanged */
    } else if (cur.kind === "probe") {
      drawGrid(parts.grid, 0);
      parts.nowText.replaceChildren("Reading the scene of ", el("strong", {}, title));
    } else if (cur.kind === "finish") {
      drawGrid(parts.grid, 0);
      parts.nowText.replaceChildren("Denoising and compositing ", el("strong", {}, title), ` · frame ${cur.frame}`);
    } else {
      const tiles = project ? project.tiles : 0;
      drawGrid(parts.grid, tiles, cur.row, cur.col);
      const chunk = tiles > 1 || cur.row || cur.col ? ` · chunk row ${cur.row}, column ${cur.col}` : "";
      parts.nowText.replaceChildren("Rendering ", el("strong", {}, title), ` · frame ${cur.frame}${chunk}`);
    }
    parts.nowKey = nowKey;
  } else {
    parts.nowKey = null;
    drawGrid(parts.grid, 0);
    setText(parts.nowText, online ? "Idle, waiting for work" : `Offline since ${ago(n.last_seen, now)}`);
  }

  setText(parts.version, n.blender_version || "unknown");
  // One slot per device: each renders a chunk of its own at the same time.
  const slots = Array.isArray(n.slots) && n.slots.length ? n.slots : ["CPU"];
  setText(parts.slots, slots.length > 1 ? `${slots.join(", ")} (${slots.length} at once)` : slots[0]);
  const devices = Array.isArray(n.devices) ? n.devices : [];
  setAttr(parts.slots, "title", devices.length ? `GPUs found: ${devices.join(", ")}` : "No GPU found");
  setText(parts.sinceLabel, online ? "Online for" : "Was online");
  setText(parts.since, online ? duration(n.started, now) : dateTime(n.started));
  setAttr(parts.since, "title", n.started ? `since ${dateTime(n.started)}` : null);
  setText(parts.done, n.chunks_done ?? 0);
  show(parts.seenRow, !online);
  setText(parts.seen, ago(n.last_seen, now));

  const lines = Array.isArray(n.log_tail) ? n.log_tail : [];
  keepBottom(parts.logShort, lines.length ? lines.slice(-SHORT_LOG).join("\n") : "(no log yet)");
  const tailKey = lines.join("\n");
  if (parts.tailKey !== tailKey) {
    parts.tailKey = tailKey;
    if (parts.details.open) loadFullLog(parts);
    else if (!parts.fullLines) keepBottom(parts.logFull, tailKey);
  }
  if (!parts.fullLines) setText(parts.summary, "Full recent log");
  show(parts.details, lines.length > 0);
  setAttr(parts.logShort, "aria-label", `Last log lines of ${n.name}`);
  setAttr(parts.logFull, "aria-label", `Recent log of ${n.name}`);
}

function render(status) {
  lastStatus = status;
  const now = Date.now();
  const list = $("#nodes");
  const projects = new Map(status.projects.map((p) => [p.id, p]));
  // online first, then by name
  const nodes = [...status.nodes].sort(
    (a, b) => Number(isOnline(b)) - Number(isOnline(a)) || String(a.name).localeCompare(String(b.name)),
  );
  const online = nodes.filter(isOnline);
  const busy = online.filter((n) => n.current).length;
  const offline = nodes.length - online.length;
  let summary = `${plural(online.length, "worker")} online, ${busy} rendering`;
  if (offline) summary += ` · ${offline} offline`;
  setText($("#workers-summary"), summary);
  show($("#workers-empty"), nodes.length === 0);
  setText($("#workers-cmd"), `blendfarm node --server ${API} --token TOKEN`);

  const versions = new Map();
  for (const n of online) {
    if (!n.blender_version) continue;
    if (!versions.has(n.blender_version)) versions.set(n.blender_version, []);
    versions.get(n.blender_version).push(n.name);
  }
  const banner = $("#workers-versions");
  if (versions.size > 1) {
    const detail = [...versions].map(([v, names]) => `${v} on ${names.join(", ")}`).join("; ");
    setText(
      banner,
      `The workers run different Blender versions (${detail}); their chunks may not match. ` +
        "Upload one Blender in Settings so that every worker uses the same.",
    );
  }
  show(banner, versions.size > 1);

  const seen = new Set();
  let previous = null;
  for (const n of nodes) {
    seen.add(n.name);
    let card = cards.get(n.name);
    if (!card) {
      card = buildCard();
      cards.set(n.name, card);
    }
    updateCard(card, n, projects, now);
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== card.root) list.insertBefore(card.root, expected);
    previous = card.root;
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.root.remove();
      cards.delete(name);
    }
  }
}

export function initWorkers() {
  subscribe(render);
  setInterval(() => {
    if (lastStatus && !$("#page-workers").hidden) render(lastStatus);
  }, 15000);
}
