// The dashboard's entry point: hash routing (#/, #/upload, #/workers, #/settings), the live
// connection indicator, and the pages' set-up.

import { API, request } from "./api.js";
import { initHome } from "./home.js";
import { initPreview } from "./preview.js";
import { initSettings, settingsShown } from "./settings.js";
import { connect, onConnection } from "./store.js";
import { $, setText } from "./ui.js";
import { initUpload } from "./upload.js";
import { initWorkers } from "./workers.js";

const ROUTES = {
  "": { page: "home", title: "Projects" },
  upload: { page: "upload", title: "Upload" },
  workers: { page: "workers", title: "Workers" },
  settings: { page: "settings", title: "Settings" },
};

let firstRoute = true;

function route() {
  const key = location.hash.replace(/^#\/?/, "").replace(/\/+$/, "").split("?")[0];
  const target = ROUTES[key] || { page: "notfound", title: "Not found" };
  for (const section of document.querySelectorAll(".page")) {
    section.hidden = section.dataset.page !== target.page;
  }
  for (const link of document.querySelectorAll(".mainnav a")) {
    if (link.dataset.route === target.page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${target.title} · blendfarm`;
  settingsShown(target.page === "settings");
  if (!firstRoute) {
    // tell keyboard and screen-reader users where they are now
    const heading = $(`#page-${target.page} h1`);
    if (heading) heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  firstRoute = false;
}

function connectionChanged(state) {
  const box = $("#conn");
  box.dataset.state = state;
  const text = { connecting: "Connecting…", live: "Live", lost: "Reconnecting…" }[state];
  setText($(".conn-text", box), text);
  box.title = state === "live" ? "Updates arrive live from the server" : `Waiting for ${API}`;
  const banner = $("#offline-banner");
  if (state === "lost") {
    setText(
      banner,
      `The farm's API at ${API} cannot be reached; retrying by itself, and what you see may be out ` +
        "of date. Is `blendfarm serve` running? If it is, it may not accept this page's address " +
        `(${location.origin}): set BLENDFARM_UI_ORIGIN=${location.origin} on the server.`,
    );
  }
  banner.hidden = state !== "lost";
}

function start() {
  setText($("#api-base"), API);
  initHome();
  initPreview();
  initUpload();
  initWorkers();
  initSettings();
  onConnection(connectionChanged);
  window.addEventListener("hashchange", route);
  route();
  connect();
  request("GET", "/api/health")
    .then((health) => setText($("#server-version"), health && health.version ? `server ${health.version}` : ""))
    .catch(() => {});
}

start();
