// Upload: pick a zip (or a .blend), choose the .blend inside it, set frames and chunks, send it
// with a real progress bar to POST /api/projects.

import { upload } from "./api.js";
import { bytes, plural } from "./format.js";
import { highlight } from "./home.js";
import { patch } from "./store.js";
import { $, el, fieldError, message, show, toast } from "./ui.js";
import { blendFiles, listZip } from "./zip.js";
import { rememberOwner } from "./owners.js";

let form;
let inputs;
let autoTitle = "";
let pickToken = 0;
let pickPromise = Promise.resolve();
let current = null; // running upload {abort}
let fileProblem = ""; // why the chosen file cannot be sent
const DEFAULT_FILE_HINT =
  "The zip is read in your browser to list its .blend files; nothing is sent until you press Submit.";

function stem(name) {
  return name.replace(/\.(zip|blend)$/i, "").replace(/[_-]+/g, " ").trim();
}

function setOptions(names, placeholder) {
  const select = inputs.blend;
  select.replaceChildren();
  if (!names.length) {
    select.append(el("option", { value: "" }, placeholder));
    select.disabled = true;
    return;
  }
  for (const name of names) select.append(el("option", { value: name }, name));
  select.disabled = false;
  select.value = names[0];
}

async function onFileChosen() {
  const token = ++pickToken;
  const file = inputs.file.files[0];
  fileProblem = "";
  fieldError(inputs.file, "");
  fieldError(inputs.blend, "");
  message($("#up-form-error"), "");
  const hint = $("#up-file-hint");
  hint.textContent = DEFAULT_FILE_HINT;
  if (!file) {
    setOptions([], "Choose a project file first");
    return;
  }
  if (/\.blend$/i.test(file.name)) {
    setOptions([file.name]);
    hint.textContent = `A single .blend file (${bytes(file.size)}). Textures and linked files must be packed into it.`;
  } else {
    setOptions([], "Reading the zip…");
    try {
      const entries = await listZip(file);
      if (token !== pickToken) return;
      const names = blendFiles(entries);
      const files = entries.filter((e) => !e.isDir);
      const unpacked = files.reduce((sum, e) => sum + e.size, 0);
      if (!names.length) {
        setOptions([], "No .blend file in this zip");
        fileProblem = `This zip holds no .blend file (${plural(files.length, "file")}). Zip the project's folder, .blend included.`;
        fieldError(inputs.file, fileProblem);
        return;
      }
      setOptions(names);
      hint.textContent =
        `${plural(names.length, ".blend file")} among ${plural(files.length, "file")} ` +
        `(${bytes(file.size)} zipped, ${bytes(unpacked)} unpacked).`;
    } catch (err) {
      if (token !== pickToken) return;
      setOptions([], "Not a readable zip");
      fileProblem = `${err.message || "This file could not be read."} Choose a .zip of the project folder or a .blend file.`;
      fieldError(inputs.file, fileProblem);
      return;
    }
  }
  const title = inputs.title.value.trim();
  if (!title || title === autoTitle) {
    autoTitle = stem(file.name);
    inputs.title.value = autoTitle;
    fieldError(inputs.title, "");
  }
}

function toggleAnimation() {
  const animation = inputs.animation.checked;
  show($("#up-still-fields"), !animation);
  show($("#up-start-field"), animation);
  show($("#up-end-field"), animation);
  show($("#up-range-hint"), animation);
  for (const input of [inputs.frame, inputs.start, inputs.end]) fieldError(input, "");
}

/** The value of a whole-number field: {value} (null when empty) or {error}. */
function integer(input, { min = null, required = false, what = "a whole number" } = {}) {
  if (input.validity.badInput) return { error: `Enter ${what}.` };
  const raw = input.value.trim();
  if (raw === "") return required ? { error: `Enter ${what}.` } : { value: null };
  if (!/^-?\d+$/.test(raw)) return { error: `Enter ${what}, without decimals.` };
  const value = Number(raw);
  if (min !== null && value < min) return { error: `Enter ${what} of at least ${min}.` };
  return { value };
}

/** Checks every field, shows errors next to them; returns the values or null. */
function validate() {
  const errors = [];
  const fail = (input, text) => {
    fieldError(input, text);
    errors.push(input);
  };
  for (const input of Object.values(inputs)) if (input.type !== "checkbox") fieldError(input, "");

  const file = inputs.file.files[0];
  if (!file) fail(inputs.file, "Choose the project's .zip (or a single .blend file).");
  else if (fileProblem) fail(inputs.file, fileProblem);
  if (file && !fileProblem && !inputs.blend.value) fail(inputs.blend, "Choose the .blend file to render.");

  const title = inputs.title.value.trim();
  if (!title) fail(inputs.title, "Give the project a title.");

  const animation = inputs.animation.checked;
  let frameStart = null;
  let frameEnd = null;
  if (animation) {
    const start = integer(inputs.start, { what: "a whole frame number" });
    const end = integer(inputs.end, { what: "a whole frame number" });
    if (start.error) fail(inputs.start, start.error);
    if (end.error) fail(inputs.end, end.error);
    if (!start.error && !end.error) {
      if ((start.value === null) !== (end.value === null)) {
        const missing = start.value === null ? inputs.start : inputs.end;
        fail(missing, "Enter both frames, or leave both empty to render the scene's frame range.");
      } else if (start.value !== null && end.value < start.value) {
        fail(inputs.end, `The end frame must not be before the start frame (${start.value}).`);
      } else {
        frameStart = start.value;
        frameEnd = end.value;
      }
    }
  } else {
    const frame = integer(inputs.frame, { required: true, what: "a whole frame number" });
    if (frame.error) fail(inputs.frame, frame.error);
    else frameStart = frameEnd = frame.value;
  }

  const tiles = integer(inputs.tiles, { min: 1, required: true, what: "a whole number" });
  if (tiles.error) fail(inputs.tiles, `${tiles.error} 1 renders each frame in one piece.`);
  const overscan = integer(inputs.overscan, { min: 0, required: true, what: "a whole number of pixels" });
  if (overscan.error) fail(inputs.overscan, overscan.error);

  if (errors.length) {
    errors[0].focus();
    return null;
  }
  return {
    file,
    blend: inputs.blend.value,
    title,
    animation,
    frameStart,
    frameEnd,
    tiles: tiles.value,
    overscan: overscan.value,
    finish: inputs.finish.value,
  };
}

function setBusy(busy) {
  for (const control of form.elements) {
    if (control.id === "up-cancel") continue;
    if (control.id === "up-blend" && !busy) {
      control.disabled = control.options.length === 0 || control.options[0].value === "";
      continue;
    }
    control.disabled = busy;
  }
  show($("#up-cancel"), busy);
  $("#up-submit").textContent = busy ? "Uploading…" : "Submit";
}

function progress(loaded, total) {
  const bar = $("#up-progress-bar");
  if (total) {
    const pct = (100 * loaded) / total;
    bar.value = pct;
    $("#up-progress-pct").textContent = `${Math.floor(pct)}%`;
    $("#up-progress-text").textContent = `Uploading… ${bytes(loaded)} of ${bytes(total)}`;
  } else {
    $("#up-progress-text").textContent = `Uploading… ${bytes(loaded)}`;
  }
}

const FIELD_INPUT = {
  file: "file",
  blend: "blend",
  title: "title",
  frame_start: "start",
  frame_end: "end",
  tiles: "tiles",
  overscan: "overscan",
  finish: "finish",
};

async function submit(event) {
  event.preventDefault();
  if (current) return;
  message($("#up-form-error"), "");
  await pickPromise; // the zip listing must be complete
  const values = validate();
  if (!values) return;

  const data = new FormData();
  data.append("blend", values.blend);
  data.append("title", values.title);
  data.append("animation", values.animation ? "true" : "false");
  if (values.frameStart !== null) {
    data.append("frame_start", String(values.frameStart));
    data.append("frame_end", String(values.frameEnd));
  }
  data.append("tiles", String(values.tiles));
  data.append("overscan", String(values.overscan));
  data.append("finish", values.finish);
  data.append("file", values.file, values.file.name); // last: the fields arrive before the big part

  const bar = $("#up-progress-bar");
  bar.value = 0;
  show($("#up-progress"), true);
  $("#up-progress-pct").textContent = "0%";
  progress(0, values.file.size);
  setBusy(true);
  current = upload("POST", "/api/projects", data, {
    onProgress: progress,
    onSent: () => {
      bar.removeAttribute("value"); // indeterminate while the server unpacks and checks it
      $("#up-progress-pct").textContent = "";
      $("#up-progress-text").textContent = "Uploaded; the server is checking the project…";
    },
  });
  try {
    const project = await current.promise;
    current = null;
    setBusy(false);
    show($("#up-progress"), false);
    reset();
    if (project && project.id) {
      rememberOwner(project.id, project.owner_key);
      patch((s) => {
        if (!s.projects.some((p) => p.id === project.id)) s.projects.push(project);
      });
      highlight(project.id);
    }
    toast(`Uploaded “${values.title}”: it is queued for rendering.`);
    location.hash = "#/";
  } catch (err) {
    current = null;
    setBusy(false);
    show($("#up-progress"), false);
    if (err.code === "aborted") {
      message($("#up-form-error"), "Upload cancelled. Nothing was sent to the farm.");
      return;
    }
    const key = err.field && FIELD_INPUT[err.field];
    if (key) {
      fieldError(inputs[key], err.message);
      inputs[key].focus();
    } else {
      message($("#up-form-error"), `The server refused the project: ${err.message}`);
      $("#up-form-error").focus();
    }
  }
}

function reset() {
  form.reset();
  fileProblem = "";
  autoTitle = "";
  setOptions([], "Choose a project file first");
  toggleAnimation();
  for (const input of Object.values(inputs)) if (input.type !== "checkbox") fieldError(input, "");
  message($("#up-form-error"), "");
  $("#up-file-hint").textContent = DEFAULT_FILE_HINT;
}

export function initUpload() {
  form = $("#upload-form");
  inputs = {
    file: $("#up-file"),
    blend: $("#up-blend"),
    title: $("#up-title"),
    animation: $("#up-animation"),
    frame: $("#up-frame"),
    start: $("#up-start"),
    end: $("#up-end"),
    tiles: $("#up-tiles"),
    overscan: $("#up-overscan"),
    finish: $("#up-finish"),
  };
  $("#up-form-error").tabIndex = -1;
  inputs.file.addEventListener("change", () => {
    pickPromise = onFileChosen();
  });
  inputs.animation.addEventListener("change", toggleAnimation);
  // clear a field's error as soon as it is edited
  for (const input of Object.values(inputs)) {
    if (input.type === "checkbox" || input.type === "file") continue;
    input.addEventListener("input", () => fieldError(input, ""));
  }
  form.addEventListener("submit", submit);
  $("#up-cancel").addEventListener("click", () => current && current.abort());
  toggleAnimation();
  // a file chosen before the scripts ran (back/forward cache) is listed too
  if (inputs.file.files.length) pickPromise = onFileChosen();
}
