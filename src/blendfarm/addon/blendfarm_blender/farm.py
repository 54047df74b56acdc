"""The farm as the add-on sees it: the server's API over urllib, and the words and numbers the
panel shows. Plain Python (Blender's own Python has neither blendfarm nor httpx), no bpy, so
it is tested outside Blender.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:2254"
DASHBOARD_PORT = 8080
TIMEOUT = 5.0


class FarmError(Exception):
    """Something the artist should read: one line, no traceback; `status` is the HTTP status
    when the server answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def server_url(text: str) -> str:
    """The server's base URL as typed in the panel: scheme added, trailing slash removed."""
    url = text.strip() or DEFAULT_SERVER
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise FarmError(f"the server address {text.strip()!r} is not a http:// URL")
    return url.rstrip("/")


def dashboard_url(server: str, dashboard: str = "") -> str:
    """The dashboard's address: the one set in the preferences, else the server's host on the
    dashboard's default port."""
    if dashboard.strip():
        return server_url(dashboard) + "/"
    parts = urllib.parse.urlsplit(server_url(server))
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{DASHBOARD_PORT}/"


def get_json(server: str, path: str, timeout: float = TIMEOUT) -> Any:
    """GET one API path; FarmError with the server's own message, or why it is unreachable."""
    url = server_url(server) + path
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise FarmError(_error_message(exc), exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FarmError(f"cannot reach the farm at {server_url(server)}: {reason}") from None
    except ValueError:
        raise FarmError(f"{url} did not answer with JSON: is it a blendfarm server?") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode("utf-8"))
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"the server answered {exc.code} {exc.reason}"


def nodes(server: str) -> list[dict[str, Any]]:
    found = get_json(server, "/api/nodes")
    if not isinstance(found, list):
        raise FarmError("the server's list of nodes is not a list: is it a blendfarm server?")
    return [n for n in found if isinstance(n, dict)]


def project(server: str, project_id: str) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", project_id):
        raise FarmError(f"{project_id!r} is not a project id")
    found = get_json(server, f"/api/projects/{project_id}")
    if not isinstance(found, dict):
        raise FarmError("the server's project is not an object")
    return found


def nodes_text(found: list[dict[str, Any]]) -> str:
    """'2 nodes online: a (idle), b (rendering)', or why nothing will render."""
    online = [n for n in found if n.get("online")]
    if not online:
        if found:
            return f"connected, but none of the {len(found)} known nodes is online"
        return "connected, but no node has joined the farm yet"
    names = ", ".join(f"{n.get('name')} ({n.get('state')})" for n in online[:6])
    more = f" and {len(online) - 6} more" if len(online) > 6 else ""
    count = "1 node" if len(online) == 1 else f"{len(online)} nodes"
    return f"{count} online: {names}{more}"


def project_progress(found: dict[str, Any]) -> tuple[str, float]:
    """What the panel says of a project, and how far it is (0 to 1)."""
    state = str(found.get("state", "?"))
    done, total = int(found.get("chunks_done") or 0), int(found.get("chunks_total") or 0)
    fraction = done / total if total else 0.0
    if state == "error":
        return f"error: {first_line(found.get('error'))}", fraction
    if state == "done":
        return "done", 1.0
    if state == "queued" and found.get("waiting"):
        return f"queued: {first_line(found.get('waiting'))}", fraction
    if total:
        return f"{state}: {done} of {total} chunks", fraction
    return state, fraction


def first_line(text: object) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def frames_arguments(frames: str) -> list[str]:
    """The `blendfarm` options for the operator's `frames`: '' (the scene's range as saved),
    'N' (one frame, a still) or 'A-B' (an animation)."""
    text = frames.strip()
    if not text:
        return []
    match = re.fullmatch(r"(-?\d{1,9})(?:\s*(?:-|\.\.|:)\s*(-?\d{1,9}))?", text)
    if not match:
        raise FarmError(f"frames must be empty (the scene's range), N or A-B, not {text!r}")
    if match.group(2) is None:
        return ["--frame", match.group(1)]
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise FarmError(f"the frames {text} end before they start")
    return ["--frames", f"{start}-{end}"]


FINISH_ITEMS = [
    ("auto", "Auto", "Denoise and composite whole frames when the scene denoises or composites"),
    ("always", "Always", "Render every tiled frame raw and finish it whole"),
    ("never", "Never", "Denoise and composite every chunk on its own (overscan hides seams)"),
]


def submit_arguments(
    command: list[str],
    blend: str,
    server: str,
    title: str = "",
    frames: str = "",
    tiles: int = 1,
    overscan: int = 0,
    priority: int = 50,
    finish: str = "auto",
) -> list[str]:
    """The command line that packs and uploads `blend`, printing progress as JSON lines."""
    if not command:
        raise FarmError("the blendfarm command is not set (the add-on's preferences)")
    args = [*command, "addon", "submit", blend, "--server", server_url(server)]
    if title.strip():
        args += ["--title", title.strip()]
    args += frames_arguments(frames)
    args += ["--tiles", str(int(tiles)), "--overscan", str(int(overscan))]
    args += ["--priority", str(min(100, max(0, int(priority))))]
    if finish != "auto":
        args += ["--finish", finish]
    return args


def size_text(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
