// Settings: the Blender the workers use, purging everything, the server's log (admin only).

import { request, upload } from "./api.js";
import { ago, bytes, dateTime } from "./format.js";
import { patch, store, subscribe } from "./store.js";
import { $, confirmDialog, fieldError, message, setText, show, toast } from "./ui.js";

let visible = false;
let logLoading = false;
let lastLogFetch = 0;
let blenderUpload = null;
const LOG_MIN_INTERVAL = 3000;

// ---------------------------------------------------------------- Blender

function describeBlender(info) {
  if (!info || !info.available) {
    return "None uploaded: every worker uses its own Blender (the one on its PATH or given with --blender).";
  }
  const parts = [info.filename || "blender.tar.xz"];
  if (info.size) parts.push(bytes(info.size));
  if (info.uploaded) parts.push(`uploaded ${dateTime(info.uploaded)} (${ago(info.uploaded)})`);
  let text = parts.join(" · ");
  if (info.sha256) text += ` · sha256 ${String(info.sha256).slice(0, 12)}…`;
  return text;
}

function showBlender(info) {
  setText($("#blender-current"), describeBlender(info));
  // {name: "3.4.1"} or {name: {version, sha256, online}}
  const nodes = Object.entries((info && info.nodes) || {}).map(([name, v]) => {
    const node = v && typeof v === "object" ? v : { version: v };
    let text = `${name}: Blender ${node.version || "unknown"}`;
    if (info && info.available && node.sha256) text += node.sha256 === info.sha256 ? " (the farm's)" : " (its own)";
    if (node.online === false) text += ", offline";
    return text;
  });
  setText($("#blender-nodes"), nodes.length ? nodes.join(" · ") : "none connected yet");
}

async function loadBlender() {
  try {
    showBlender(await request("GET", "/api/blender"));
    $("#bl-submit").disabled = Boolean(blenderUpload);
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      setText($("#blender-current"), "This server cannot distribute Blender (it has no /api/blender).");
      setText($("#blender-nodes"), "–");
      $("#bl-submit").disabled = true;
      return;
    }
    setText($("#blender-current"), `Unknown (${err.message})`);
  }
}

function blenderProgress(loaded, total) {
  const bar = $("#bl-progress-bar");
  if (total) {
    bar.value = (100 * loaded) / total;
    setText($("#bl-progress-pct"), `${Math.floor((100 * loaded) / total)}%`);
    setText($("#bl-progress-text"), `Uploading… ${bytes(loaded)} of ${bytes(total)}`);
  }
}

function setBlenderBusy(busy) {
  for (const id of ["bl-file", "bl-password", "bl-submit"]) $(`#${id}`).disabled = busy;
  show($("#bl-cancel"), busy);
  show($("#bl-progress"), busy);
}

async function submitBlender(event) {
  event.preventDefault();
  if (blenderUpload) return;
  const fileInput = $("#bl-file");
  const password = $("#bl-password");
  message($("#bl-error"), "");
  message($("#bl-ok"), "");
  fieldError(fileInput, "");
  fieldError(password, "");
  const file = fileInput.files[0];
  let bad = null;
  if (!file) {
    fieldError(fileInput, "Choose a blender-*-linux-*.tar.xz archive from blender.org.");
    bad = bad || fileInput;
  } else if (!/\.tar\.xz$|\.txz$/i.test(file.name)) {
    fieldError(fileInput, "This is not a .tar.xz archive: download the Linux .tar.xz build from blender.org.");
    bad = bad || fileInput;
  }
  if (!password.value) {
    fieldError(password, "Enter the admin password.");
    bad = bad || password;
  }
  if (bad) {
    bad.focus();
    return;
  }

  $("#bl-progress-bar").value = 0;
  blenderProgress(0, file.size);
  setBlenderBusy(true);
  blenderUpload = upload("PUT", `/api/blender?filename=${encodeURIComponent(file.name)}`, file, {
    headers: { "X-Blendfarm-Password": password.value, "Content-Type": "application/x-xz" },
    onProgress: blenderProgress,
    onSent: () => {
      $("#bl-progress-bar").removeAttribute("value");
      setText($("#bl-progress-pct"), "");
      setText($("#bl-progress-text"), "Uploaded; the server is checking the archive…");
    },
  });
  try {
    showBlender(await blenderUpload.promise);
    message($("#bl-ok"), `${file.name} is now the farm's Blender; workers switch to it for their next chunk.`);
    $("#blender-form").reset();
  } catch (err) {
    if (err.code === "aborted") message($("#bl-error"), "Upload cancelled; the farm's Blender is unchanged.");
    else if (err.status === 403 || err.status === 429) {
      fieldError(password, err.message);
      password.focus();
    } else message($("#bl-error"), `The server refused the archive: ${err.message}`);
  } finally {
    blenderUpload = null;
    setBlenderBusy(false);
  }
}

// ---------------------------------------------------------------- purge

async function submitPurge(event) {
  event.preventDefault();
  const password = $("#purge-password");
  message($("#purge-error"), "");
  message($("#purge-ok"), "");
  fieldError(password, "");
  if (!password.value) {
    fieldError(password, "Enter the admin password.");
    password.focus();
    return;
  }
  const count = store.status ? store.status.projects.length : 0;
  setText($("#purge-dialog-count"), count === 1 ? "1 project" : `${count} projects`);
  const confirmed = await confirmDialog($("#purge-dialog"));
  if (!confirmed) return;
  const button = $("#purge-submit");
  button.disabled = true;
  try {
    await request("POST", "/api/purge", { headers: { "X-Blendfarm-Password": password.value } });
    password.value = "";
    patch((s) => {
      s.projects = [];
      s.nodes = [];
    });
    message($("#purge-ok"), "The database was purged: every project, render and worker is gone.");
    toast("Database purged.");
    refreshLog(true);
  } catch (err) {
    if (err.status === 403 || err.status === 429) {
      fieldError(password, err.message);
      password.focus();
    } else {
      message($("#purge-error"), `The purge failed: ${err.message}`);
    }
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- log

// The server's log is for the admin: it is read with the password, which is kept here, in
// memory, for this page's life (never in any storage) once the server accepted it.
let logPassword = null;
let logTimer = null;

function showLogText(data) {
  const pre = $("#server-log");
  const lines = (data && data.lines) || [];
  const text = lines.length ? lines.join("\n") : "(the log is empty)";
  if (pre.textContent !== text) {
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8 || !pre.textContent;
    pre.textContent = text;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}

/** Shows the log (unlocked) or the password form (locked). */
function setLogUnlocked(unlocked) {
  show($("#log-form"), !unlocked);
  show($("#log-refresh"), unlocked);
  show($("#server-log"), unlocked);
  if (!unlocked) $("#server-log").textContent = "";
}

async function readLog(password) {
  return request("GET", "/api/logs", { headers: { "X-Blendfarm-Password": password } });
}

async function submitLogPassword(event) {
  event.preventDefault();
  const input = $("#log-password");
  const button = $("#log-submit");
  message($("#log-error"), "");
  fieldError(input, "");
  if (!input.value) {
    fieldError(input, "Enter the admin password.");
    input.focus();
    return;
  }
  if (button.disabled) return;
  button.disabled = true;
  const password = input.value;
  try {
    const data = await readLog(password);
    logPassword = password;
    lastLogFetch = Date.now();
    input.value = "";
    setLogUnlocked(true);
    showLogText(data);
    $("#server-log").focus();
  } catch (err) {
    if (err.status === 403 || err.status === 429) {
      fieldError(input, err.message);
      input.focus();
    } else {
      message($("#log-error"), `The log could not be read: ${err.message}`);
    }
  } finally {
    button.disabled = false;
  }
}

async function refreshLog(force = false) {
  if (!logPassword) return;
  const wait = LOG_MIN_INTERVAL - (Date.now() - lastLogFetch);
  if (logLoading || (!force && wait > 0)) {
    // read it once more when allowed, so the last change is not missed
    if (!logTimer) {
      logTimer = setTimeout(() => {
        logTimer = null;
        if (visible) refreshLog();
      }, Math.max(wait, 500));
    }
    return;
  }
  logLoading = true;
  lastLogFetch = Date.now();
  try {
    showLogText(await readLog(logPassword));
    message($("#log-error"), "");
  } catch (err) {
    if (err.status === 403) {
      // the password was changed meanwhile: ask again
      logPassword = null;
      setLogUnlocked(false);
      fieldError($("#log-password"), err.message);
    } else {
      message($("#log-error"), `The log could not be read: ${err.message}`);
    }
  } finally {
    logLoading = false;
  }
}

export function settingsShown(shown) {
  visible = shown;
  if (shown) {
    loadBlender();
    refreshLog(true);
  }
}

export function initSettings() {
  $("#blender-form").addEventListener("submit", submitBlender);
  $("#bl-cancel").addEventListener("click", () => blenderUpload && blenderUpload.abort());
  $("#purge-form").addEventListener("submit", submitPurge);
  $("#log-form").addEventListener("submit", submitLogPassword);
  $("#log-refresh").addEventListener("click", () => refreshLog(true));
  for (const id of ["bl-password", "purge-password", "log-password"]) {
    const input = $(`#${id}`);
    input.addEventListener("input", () => fieldError(input, ""));
  }
  // the log follows the farm's activity: re-read it (at most every 3 s) when something changes
  subscribe(() => {
    if (visible) refreshLog();
  });
}
