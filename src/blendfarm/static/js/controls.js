// A project card's queue controls: priority, pause / resume, cancel, retry a cancelled
// project, requeue a frame; and what time tells: ETA range and a small chart of frame times.
// Changing a project needs its owner key (kept by the browser that uploaded it) or the admin
// password, asked for once per action and never stored.

import { request } from "./api.js";
import { ownerHeaders, ownsProject } from "./owners.js";
import { patch } from "./store.js";
import { el, setAttr, setText, show, toast } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

/** "45 s", "12 min", "3 h 05 min" */
export function seconds(value) {
  const s = Math.max(0, Math.round(Number(value) || 0));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function etaText(p) {
  if (p.eta_low === null || p.eta_low === undefined || p.chunks_done >= p.chunks_total) return "";
  const low = seconds(p.eta_low);
  const high = seconds(p.eta_high);
  return low === high ? `about ${low} left` : `${low} – ${high} left`;
}

async function act(p, path, body, done) {
  const title = p.title || p.id;
  let password = "";
  if (!ownsProject(p.id)) {
    password = window.prompt(`“${title}” was uploaded from another browser: admin password?`) || "";
    if (!password) return;
  }
  const headers = ownerHeaders(p.id, password);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const answer = await request("POST", `/api/projects/${encodeURIComponent(p.id)}/${path}`, {
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const fresh = answer && answer.project ? answer.project : answer;
    if (fresh && fresh.id === p.id) {
      patch((s) => {
        s.projects = s.projects.map((x) => (x.id === p.id ? fresh : x));
      });
    }
    toast(done(answer));
  } catch (err) {
    toast(`Could not change “${title}”: ${err.message}`, "error");
  }
}

function frameChart(times) {
  const width = 160;
  const height = 32;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "frame-chart");
  svg.setAttribute("role", "img");
  const most = Math.max(...times.map((t) => t.seconds), 0.001);
  const step = width / times.length;
  const label = times.map((t) => `frame ${t.frame}: ${seconds(t.seconds)}`).join(", ");
  svg.setAttribute("aria-label", `Render time per frame: ${label}`);
  times.forEach((t, i) => {
    const h = Math.max(1, (height * t.seconds) / most);
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("x", String(i * step + step * 0.1));
    bar.setAttribute("y", String(height - h));
    bar.setAttribute("width", String(Math.max(1, step * 0.8)));
    bar.setAttribute("height", String(h));
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `frame ${t.frame}: ${seconds(t.seconds)}`;
    bar.append(tip);
    svg.append(bar);
  });
  return svg;
}

/** The controls' elements for one card; `update(parts, p)` fills them in. */
export function buildControls(parts) {
  const c = {};
  c.priority = el("input", { type: "number", min: "0", max: "100", step: "1", class: "priority-input" });
  c.prioritySet = el(
    "button",
    {
      type: "button",
      class: "btn btn-small btn-quiet",
      onclick: () => {
        const value = Number.parseInt(c.priority.value, 10);
        if (!(value >= 0 && value <= 100)) {
          toast("A priority is a whole number from 0 to 100.", "error");
          return;
        }
        act(parts.project, "priority", { priority: value }, (p) => `Priority of “${p.title}” is ${p.priority}.`);
      },
    },
    "Set",
  );
  c.priorityLabel = el("span", { class: "priority" }, el("label", {}, "Priority ", c.priority), c.prioritySet);
  c.pause = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Pause");
  c.pause.addEventListener("click", () => {
    const p = parts.project;
    const verb = p.state === "paused" ? "resume" : "pause";
    act(p, verb, undefined, (fresh) => `“${fresh.title}” is ${fresh.state}.`);
  });
  c.cancel = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Cancel");
  c.cancel.addEventListener("click", () => {
    const p = parts.project;
    if (!window.confirm(`Cancel “${p.title || p.id}”? What is rendered is kept; Retry goes on.`)) return;
    act(p, "cancel", undefined, (fresh) => `“${fresh.title}” is cancelled.`);
  });
  c.retry = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Retry");
  c.retry.addEventListener("click", () =>
    act(parts.project, "retry", undefined, (fresh) => `Retrying “${fresh.title}”.`),
  );
  c.frame = el("input", { type: "number", step: "1", class: "requeue-frame" });
  c.requeue = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Render again");
  c.requeue.addEventListener("click", () => {
    const frame = Number.parseInt(c.frame.value, 10);
    if (!Number.isInteger(frame)) {
      toast("Give the frame to render again.", "error");
      return;
    }
    act(parts.project, "requeue", { frames: `${frame}-${frame}` }, (a) => `Frame ${frame}: ${a.chunks} chunk(s) queued again.`);
  });
  c.requeueLabel = el("span", { class: "requeue" }, el("label", {}, "Frame ", c.frame), c.requeue);
  c.eta = el("span", { class: "eta" });
  c.chart = el("div", { class: "frame-times" });
  c.root = el(
    "div",
    { class: "project-controls" },
    c.priorityLabel,
    c.pause,
    c.cancel,
    c.retry,
    c.requeueLabel,
    c.eta,
    c.chart,
  );
  return c;
}

export function updateControls(c, p) {
  const title = p.title || p.blend || p.id;
  if (document.activeElement !== c.priority) c.priority.value = String(p.priority ?? 50);
  setAttr(c.priority, "aria-label", `Priority of ${title}`);
  setAttr(c.prioritySet, "aria-label", `Set priority of ${title}`);
  const active = ["queued", "rendering", "paused"].includes(p.state);
  setText(c.pause, p.state === "paused" ? "Resume" : "Pause");
  setAttr(c.pause, "aria-label", `${p.state === "paused" ? "Resume" : "Pause"} ${title}`);
  show(c.pause, active);
  setAttr(c.cancel, "aria-label", `Cancel ${title}`);
  show(c.cancel, active);
  setAttr(c.retry, "aria-label", `Retry ${title}`);
  show(c.retry, p.state === "cancelled");
  const chunked = Number(p.chunks_total) > 0 && !["error", "cancelled"].includes(p.state);
  show(c.requeueLabel, chunked);
  if (p.frame_start !== null && p.frame_end !== null) {
    setAttr(c.frame, "min", p.frame_start);
    setAttr(c.frame, "max", p.frame_end);
    if (!c.frame.value) c.frame.value = String(p.frame_start);
  }
  setAttr(c.frame, "aria-label", `Frame of ${title} to render again`);
  setAttr(c.requeue, "aria-label", `Render frame again: ${title}`);
  setText(c.eta, etaText(p));
  show(c.eta, Boolean(etaText(p)));
  const times = Array.isArray(p.frame_times) ? p.frame_times : [];
  const key = times.map((t) => `${t.frame}:${t.seconds}`).join(",");
  if (c.chartKey !== key) {
    c.chartKey = key;
    c.chart.replaceChildren(...(times.length ? [el("span", { class: "muted" }, "Frame times"), frameChart(times)] : []));
  }
  show(c.chart, times.length > 0);
}
