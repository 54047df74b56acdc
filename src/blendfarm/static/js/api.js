// Talking to the blendfarm JSON API (docs/api.md), which lives on another port than this page.
//
// The dashboard talks only to the API it was served with: the same host as this page, on the
// port that the UI server's /config.js names (window.BLENDFARM_API_PORT, else 2254). Nothing in
// the page address, the tab's storage or the page itself can point it elsewhere, so a link to
// the dashboard cannot send the admin password to another machine.

const DEFAULT_PORT = 2254;
// Older dashboards remembered an API given with `?api=` under this key: forget it.
const OLD_STORAGE_KEY = "blendfarm-api";

function forgetOldSetting() {
  try {
    sessionStorage.removeItem(OLD_STORAGE_KEY);
  } catch {
    /* storage may be disabled: then nothing was remembered either */
  }
}

function resolveBase() {
  const port = Number.parseInt(window.BLENDFARM_API_PORT, 10);
  const url = new URL("http://127.0.0.1/");
  if (location.protocol === "http:" || location.protocol === "https:") {
    url.protocol = location.protocol;
    url.hostname = location.hostname;
  }
  url.port = String(port > 0 && port < 65536 ? port : DEFAULT_PORT);
  return url.origin;
}

forgetOldSetting();

export const API = resolveBase();

/** An absolute URL for an API path such as "/api/projects/ab12/result" (links the API gave). */
export function apiUrl(path) {
  if (!path) return null;
  if (/^https?:\/\//i.test(path)) return path;
  return API + (path.startsWith("/") ? path : `/${path}`);
}

/** The URL of an API call: always on the farm's API, whatever the path says. */
function endpoint(path) {
  const url = new URL(path, `${API}/`);
  if (url.origin !== API) throw new ApiError(`Not an API path: ${path}`);
  return url.href;
}

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, field = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function statusText(status) {
  const known = {
    400: "the server refused the request",
    403: "wrong password",
    404: "not found",
    409: "not possible right now",
    413: "the file is too large",
    429: "too many attempts; wait a little and try again",
    500: "the server failed",
    507: "the server's disk is full",
  };
  return known[status] || `the server answered ${status}`;
}

/** Builds an ApiError from the server's `{"error": {"message": ...}}` body (or anything else). */
export function errorFromBody(status, bodyText) {
  let message = null;
  let code = null;
  let field = null;
  try {
    const data = JSON.parse(bodyText);
    const err = data && data.error;
    if (err && typeof err === "object") {
      message = err.message || null;
      code = err.code || null;
      field = err.field || null;
    } else if (typeof err === "string") {
      message = err;
    } else if (data && typeof data.detail === "string") {
      message = data.detail;
    }
  } catch {
    if (bodyText && bodyText.length < 300 && !/<html/i.test(bodyText)) message = bodyText.trim();
  }
  if (!message) message = status ? `Error ${status}: ${statusText(status)}` : "The server could not be reached.";
  return new ApiError(message, { status, code, field });
}

/** fetch() the API; resolves to the parsed JSON, rejects with an ApiError. */
export async function request(method, path, { body, headers } = {}) {
  let response;
  try {
    response = await fetch(endpoint(path), { method, body, headers, cache: "no-store" });
  } catch {
    throw new ApiError(`The server at ${API} could not be reached.`);
  }
  const text = await response.text();
  if (!response.ok) throw errorFromBody(response.status, text);
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Sends a body with XMLHttpRequest so the upload progress is known.
 * Returns {promise, abort}; onProgress(loaded, total) is called while sending,
 * onSent() once the whole body has left the browser (the server may still be working).
 */
export function upload(method, path, body, { headers = {}, onProgress, onSent } = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open(method, endpoint(path));
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (onProgress) onProgress(event.loaded, event.lengthComputable ? event.total : 0);
    };
    xhr.upload.onload = () => {
      if (onSent) onSent();
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(xhr.responseText ? JSON.parse(xhr.responseText) : null);
        } catch {
          resolve(xhr.responseText);
        }
      } else {
        reject(errorFromBody(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () =>
      reject(new ApiError(`The upload to ${API} failed: the server could not be reached or closed the connection.`));
    xhr.onabort = () => reject(new ApiError("Upload cancelled.", { code: "aborted" }));
    xhr.send(body);
  });
  return { promise, abort: () => xhr.abort() };
}
