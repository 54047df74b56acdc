// The owner keys this browser received for the projects it uploaded (the server returns a
// project's key once, in the answer to the upload). Deleting or retrying a project needs its
// key or the admin password; the password is never stored.

const STORAGE_KEY = "blendfarm-owner-keys";
const KEPT = 500;

function load() {
  try {
    const data = JSON.parse(localStorage.getItem(STORAGE_KEY) || "{}");
    return data && typeof data === "object" ? data : {};
  } catch {
    return {};
  }
}

/** Keep the owner key of a project this browser uploaded. */
export function rememberOwner(id, key) {
  if (!id || !key) return;
  const keys = load();
  delete keys[id];
  keys[id] = key;
  const entries = Object.entries(keys).slice(-KEPT);
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(Object.fromEntries(entries)));
  } catch {
    /* storage disabled: the admin password still works */
  }
}

/** Whether this browser holds the owner key of a project. */
export function ownsProject(id) {
  return Boolean(load()[id]);
}

/** Headers that prove the right to change a project: its key, and the password when given. */
export function ownerHeaders(id, password = "") {
  const headers = {};
  const key = load()[id];
  if (key) headers["X-Blendfarm-Owner-Key"] = key;
  if (password) headers["X-Blendfarm-Password"] = password;
  return headers;
}
