// Talking to the blendfarm JSON API (docs/api.md), which lives on another port than this page.
//
// Where the API is, by precedence:
//   1. `?api=http://host:port` in the page URL (remembered in sessionStorage for the tab),
//   2. what this tab remembered before,
//   3. <meta name="blendfarm-api" content="...">, or window.BLENDFARM_API set by config.js,
//   4. http(s)://<this page's hostname>:<window.BLENDFARM_API_PORT from config.js, else 2254>.

const STORAGE_KEY = "blendfarm-api";
const DEFAULT_PORT = 2254;

function cleanBase(value) {
  if (!value) return null;
  try {
    const url = new URL(value, location.href);
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    return url.href.replace(/\/+$/, "");
  } catch {
    return null;
  }
}

function sessionGet() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function sessionSet(value) {
  try {
    sessionStorage.setItem(STORAGE_KEY, value);
  } catch {
    /* storage may be disabled; the query parameter still works for this load */
  }
}

function resolveBase() {
  const fromQuery = cleanBase(new URLSearchParams(location.search).get("api"));
  if (fromQuery) {
    sessionSet(fromQuery);
    return fromQuery;
  }
  const remembered = cleanBase(sessionGet());
  if (remembered) return remembered;
  const meta = document.querySelector('meta[name="blendfarm-api"]');
  const configured = cleanBase(meta && meta.content.trim()) || cleanBase(window.BLENDFARM_API);
  if (configured) return configured;
  const protocol = location.protocol === "https:" ? "https:" : "http:";
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const port = Number.parseInt(window.BLENDFARM_API_PORT, 10) || DEFAULT_PORT;
  return `${protocol}//${host || "127.0.0.1"}:${port}`;
}

export const API = resolveBase();

/** An absolute URL for an API path such as "/api/projects/ab12/result". */
export function apiUrl(path) {
  if (!path) return null;
  if (/^https?:\/\//i.test(path)) return path;
  return API + (path.startsWith("/") ? path : `/${path}`);
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
    response = await fetch(apiUrl(path), { method, body, headers, cache: "no-store" });
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
    xhr.open(method, apiUrl(path));
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
