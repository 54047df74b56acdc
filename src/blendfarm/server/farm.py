"""The farm as a service: what the API's routes ask of the store and the data dir."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zipfile
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..archive import choose_blend, inspect_zip, is_blend_file, wrap_blend
from ..blendversion import can_open, read_version
from ..errors import BadInput, Conflict, NotFound
from ..pngio import NotAPng, png_header, read_png
from ..settings import Settings
from ..states import Event, ProjectState, TaskKind, TaskState
from ..tiles import blender_border, chunk_rect, grow
from .auth import Guard, save_password
from .blender_shelf import BlenderShelf
from .files import DataDir, sha256_file
from .store import Store
from .validate import Submission, clean_log, plan_from_probe

log = logging.getLogger("blendfarm.server")
OFFLINE_SHOWN = 3600.0
LOG_TAIL = 8


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LogBuffer(logging.Handler):
    """The server's recent log lines, for the dashboard's settings page."""

    def __init__(self, size: int = 500):
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Farm:
    """Projects in, tasks out, results back: the server's behaviour."""

    def __init__(self, settings: Settings, store: Store, data: DataDir, guard: Guard):
        self.settings = settings
        self.store = store
        self.data = data
        self.guard = guard
        self.blender = BlenderShelf(data, store)
        self.logs = LogBuffer()
        self._event_lock = threading.Lock()
        self._event_cache: tuple[int, str] = (-1, "")
        log.addHandler(self.logs)
        log.setLevel(logging.INFO)

    def close(self) -> None:
        """Stop collecting log lines and close the database."""
        log.removeHandler(self.logs)
        self.store.close()

    # -- projects ---------------------------------------------------------------------------

    def submit(self, upload: Path, filename: str, sub: Submission) -> dict[str, Any]:
        """Store an uploaded zip (or lone .blend) as a new project; the upload is consumed."""
        archive = upload
        try:
            if not _is_zip(upload):
                if not is_blend_file(upload):
                    raise BadInput(f"{filename or 'the upload'} is neither a zip nor a .blend file")
                archive = self.data.temp_file(".zip")
                name = Path(filename).name if filename.lower().endswith(".blend") else "scene.blend"
                wrap_blend(upload, archive, name)
            summary = inspect_zip(archive, self.settings.max_unpacked, self.settings.max_ratio)
            blend = choose_blend(summary, sub.blend)
            with zipfile.ZipFile(archive) as zf, zf.open(summary.entries[blend]) as member:
                saved_by = read_version(member)
            if saved_by is None:
                raise BadInput(f"{blend} is not a .blend file")
            sha = sha256_file(archive)
            size = archive.stat().st_size
            pid = self.store.create_project(
                {
                    "title": sub.title or Path(blend).stem,
                    "blend": blend,
                    "sha256": sha,
                    "archive_size": size,
                    "animation": sub.animation,
                    "frame_start": sub.frame_start,
                    "frame_end": sub.frame_end,
                    "tiles": sub.tiles,
                    "overscan": sub.overscan,
                    "file_version": f"{saved_by[0]}.{saved_by[1]}",
                }
            )
            self.data.adopt_upload(archive, pid)
        finally:
            upload.unlink(missing_ok=True)
            archive.unlink(missing_ok=True)
        frames = (
            "the scene's frames"
            if sub.frame_start is None
            else f"frames {sub.frame_start}-{sub.frame_end}"
        )
        log.info(
            "project %s submitted: %s, %s, %dx%d chunks, overscan %d",
            pid,
            blend,
            frames,
            sub.tiles,
            sub.tiles,
            sub.overscan,
        )
        return self.project_view(pid)

    def project_view(self, pid: str) -> dict[str, Any]:
        view = self._view(self.store.project(pid), self.store.counts(pid))
        online = [n for n in self.nodes() if n["online"]]
        view["waiting"] = waiting_reason(view, online)
        return view

    def _view(self, row: dict[str, Any], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
        pid = row["id"]
        c = counts.get(pid, {})
        done = row["state"] == ProjectState.DONE.value
        animation = bool(row["animation"])
        base = f"/api/projects/{pid}"
        return {
            "id": pid,
            "title": row["title"],
            "blend": row["blend"],
            "state": row["state"],
            "error": row["error"],
            "animation": animation,
            "frame_start": row["frame_start"],
            "frame_end": row["frame_end"],
            "tiles": row["tiles"],
            "overscan": row["overscan"],
            "chunks_done": c.get("done", 0),
            "chunks_total": c.get("total", 0),
            "chunks_rendering": c.get("rendering", 0),
            "frames_done": c.get("frames", 0),
            "width": row["width"],
            "height": row["height"],
            "fps": (row["fps"] / row["fps_base"]) if row["fps"] else None,
            "size": row["size"],
            "created": iso(row["created"]),
            "updated": iso(row["updated"]),
            "result_url": f"{base}/result" if done else None,
            "raw_url": f"{base}/raw" if done else None,
            "thumbnail_url": f"{base}/thumbnail" if row["thumbnail"] else None,
            "result_type": ("video/mp4" if animation else "image/png") if done else None,
            "blocklist": self.store.blocklist(pid, self.settings.max_failures),
            "warnings": json.loads(row["warnings"]),
            "file_version": row["file_version"],
            "waiting": None,
        }

    def projects(self, nodes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        counts = self.store.counts()
        views = [self._view(row, counts) for row in self.store.projects()]
        online = [n for n in (self.nodes() if nodes is None else nodes) if n["online"]]
        for view in views:
            view["waiting"] = waiting_reason(view, online)
        return views

    def delete(self, pid: str) -> dict[str, Any]:
        self.store.delete_project(pid)
        freed = self.data.delete_project(pid)
        log.info("project %s deleted, %d bytes freed", pid, freed)
        return {"deleted": pid, "freed": freed}

    def retry(self, pid: str) -> dict[str, Any]:
        row = self.store.project(pid)
        if row["state"] != ProjectState.ERROR.value:
            raise Conflict(f"project {pid} is {row['state']}, not in error")
        self.store.retry(pid)
        log.info("project %s put back in the queue", pid)
        return self.project_view(pid)

    def finished_file(self, pid: str, kind: str) -> tuple[Path, str, str]:
        """(path, media type, download name) of a finished project's result or raw zip."""
        row = self.store.project(pid)
        if row["state"] != ProjectState.DONE.value:
            raise Conflict(f"project {pid} is not finished yet ({row['state']})")
        stem = _safe_stem(row["title"]) or pid
        if kind == "raw":
            raw = self.data.raw(pid)
            if not raw.exists():
                raise NotFound(
                    f"the raw chunks of project {pid} are missing from the server's disk"
                )
            return raw, "application/zip", f"{stem}-{pid}-raw.zip"
        animation = bool(row["animation"])
        media = "video/mp4" if animation else "image/png"
        ext = "mp4" if animation else "png"
        path = self.data.result(pid, animation)
        if not path.exists():
            raise NotFound(f"the result of project {pid} is missing from the server's disk")
        return path, media, f"{stem}-{pid}.{ext}"

    def thumbnail(self, pid: str) -> Path:
        self.store.project(pid)
        path = self.data.thumbnail(pid)
        if not path.exists():
            raise NotFound(f"project {pid} has no stitched frame yet")
        return path

    # -- the farm at a glance -------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for n in self.store.nodes():
            if n["offline"] and now - n["last_seen"] > OFFLINE_SHOWN:
                continue
            cur = n["current"]
            out.append(
                {
                    "name": n["name"],
                    "online": not n["offline"],
                    "state": "offline" if n["offline"] else ("rendering" if cur else "idle"),
                    "blender_version": n["blender_version"],
                    "started": iso(n["started"]),
                    "last_seen": iso(n["last_seen"]),
                    "chunks_done": n["chunks_done"],
                    "current": None
                    if cur is None
                    else {
                        "project": cur["project_id"],
                        "title": cur["title"],
                        "kind": cur["kind"],
                        "frame": cur["frame"],
                        "row": cur["row"],
                        "col": cur["col"],
                    },
                    "log_tail": n["log"][-LOG_TAIL:],
                    "info": n["info"],
                }
            )
        return out

    def node_log(self, name: str) -> list[str]:
        for n in self.store.nodes():
            if n["name"] == name:
                return list(n["log"])
        raise NotFound(f"no node {name!r}")

    def status(self) -> dict[str, Any]:
        nodes = self.nodes()
        projects = self.projects(nodes)
        disk = self.data.disk_usage()
        disk["data"] = sum(p["size"] for p in projects)
        return {
            "server_id": self.store.server_id,
            "version": __version__,
            "projects": projects,
            "nodes": nodes,
            "disk": disk,
        }

    def change_password(self, new: str) -> None:
        """Store a new admin password (scrypt hash) and use it from now on."""
        self.guard.secrets.password_hash = save_password(self.data.root, new)
        log.warning("the admin password was changed")

    def status_event(self, version: int) -> str:
        """The status as a server-sent event, made once per store version for every watcher."""
        with self._event_lock:
            if self._event_cache[0] != version:
                text = json.dumps(self.status())
                self._event_cache = (version, f"event: status\ndata: {text}\n\n")
            return self._event_cache[1]

    # -- nodes ------------------------------------------------------------------------------

    def register(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        self.store.node_seen(name, info)
        log.info("node %s online (Blender %s)", name, info.get("blender_version"))
        return {
            "server_id": self.store.server_id,
            "blender_sha256": self._blender_sha(),
            "node_timeout": self.settings.node_timeout,
            "heartbeat": max(1.0, self.settings.node_timeout / 3),
            "chunk_timeout": self.settings.chunk_timeout,
        }

    def heartbeat(self, name: str, task_ids: list[int], lines: list[str]) -> dict[str, Any]:
        self.store.node_seen(name)
        lost = self.store.renew(name, task_ids, self.settings.node_timeout)
        self.store.node_log(name, clean_log(lines))
        return {
            "server_id": self.store.server_id,
            "cancel": lost,
            "blender_sha256": self._blender_sha(),
        }

    def _blender_sha(self) -> str | None:
        info = self.blender.info()
        return None if info is None else str(info["sha256"])

    def blender_status(self) -> dict[str, Any]:
        """The server's Blender and the Blender every node runs."""
        info = self.blender.info()
        nodes = {
            n["name"]: {
                "version": n["blender_version"],
                "sha256": n["info"].get("blender_sha256"),
                "online": n["online"],
            }
            for n in self.nodes()
        }
        if info is None:
            none = dict.fromkeys(("filename", "sha256", "size", "uploaded", "executable"))
            return {"available": False, **none, "nodes": nodes}
        return {"available": True, **info, "uploaded": iso(info["uploaded"]), "nodes": nodes}

    def lease(self, name: str) -> dict[str, Any] | None:
        self.store.node_seen(name)
        task = self.store.lease(name, self.settings.node_timeout, self.settings.max_failures)
        if task is None:
            return None
        return self._describe(task)

    def _describe(self, task: dict[str, Any]) -> dict[str, Any]:
        p = self.store.project(task["project_id"])
        out: dict[str, Any] = {
            "id": task["id"],
            "lease": task["lease"],
            "kind": task["kind"],
            "project": p["id"],
            "title": p["title"],
            "sha256": p["sha256"],
            "archive_size": p["archive_size"],
            "archive_url": f"/api/projects/{p['id']}/archive",
            "blend": p["blend"],
            "timeout": self.settings.chunk_timeout,
        }
        if task["kind"] == TaskKind.CHUNK.value:
            w, h, n = p["width"], p["height"], p["tiles"]
            rect = chunk_rect(w, h, n, task["row"], task["col"])
            render = grow(rect, w, h, p["overscan"]) if n > 1 else rect
            border = blender_border(render, w, h) if n > 1 else None
            out.update(
                frame=task["frame"],
                row=task["row"],
                col=task["col"],
                tiles=n,
                width=w,
                height=h,
                rect=rect.as_dict(),
                render_rect=render.as_dict(),
                border=border and [border.min_x, border.max_x, border.min_y, border.max_y],
            )
        return out

    def _leased_task(self, task_id: int, lease: str) -> dict[str, Any]:
        task = self.store.task(task_id)
        if not lease or lease not in self.store.leases_of(task_id):
            raise Conflict(f"task {task_id} was not leased with that lease")
        return task

    def chunk_result(self, task_id: int, lease: str, upload: Path) -> dict[str, Any]:
        """Take a chunk's PNG (from a node); idempotent, and valid after the lease expired."""
        try:
            task = self._leased_task(task_id, lease)
            if task["kind"] != TaskKind.CHUNK.value:
                raise BadInput(f"task {task_id} is a {task['kind']}, not a chunk")
            if task["state"] == TaskState.DONE.value:
                return {"accepted": False, "reason": "the chunk is already done"}
            p = self.store.project(task["project_id"])
            rect = chunk_rect(p["width"], p["height"], p["tiles"], task["row"], task["col"])
            try:
                width, height, _depth, _colour = png_header(upload)
            except NotAPng:
                raise BadInput("the chunk result is not a PNG image") from None
            if (width, height) != (rect.width, rect.height):
                raise BadInput(
                    f"the chunk image is {width}x{height}, expected {rect.width}x{rect.height}"
                )
            try:
                read_png(upload)  # decoded whole: a cut-off file is refused, not stitched later
            except NotAPng as exc:
                raise BadInput(f"the chunk image is damaged: {exc}") from None
            dest = self.data.chunk(p["id"], task["frame"], task["row"], task["col"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            size = upload.stat().st_size
            os.replace(upload, dest)
            if self.store.complete(task_id):
                self.store.add_size(p["id"], size)
                self.store.sync_state(p["id"])
            return {"accepted": True}
        finally:
            upload.unlink(missing_ok=True)

    def probe_result(self, task_id: int, lease: str, probe: dict[str, Any]) -> dict[str, Any]:
        task = self._leased_task(task_id, lease)
        if task["kind"] != TaskKind.PROBE.value:
            raise BadInput(f"task {task_id} is a {task['kind']}, not a probe")
        if task["state"] == TaskState.DONE.value:
            return {"accepted": False, "reason": "the probe is already done"}
        p = self.store.project(task["project_id"])
        try:
            plan = plan_from_probe(p, probe)
        except BadInput as exc:
            # The probe goes back to the queue, so `retry` probes again (the file may be fixed).
            self.store.release(task_id, Event.RESET)
            self.store.update_project(p["id"], state=ProjectState.ERROR.value, error=str(exc))
            return {"accepted": True}
        self.store.add_chunks(
            p["id"],
            plan.frames,
            p["tiles"],
            width=plan.width,
            height=plan.height,
            fps=plan.fps,
            fps_base=plan.fps_base,
            frame_start=plan.frames[0],
            frame_end=plan.frames[-1],
            animation=int(plan.animation),
            warnings=json.dumps(plan.warnings),
            probe=json.dumps(probe),
        )
        self.store.complete(task_id)
        self.store.sync_state(p["id"])
        log.info(
            "project %s probed: %dx%d, frames %d-%d",
            p["id"],
            plan.width,
            plan.height,
            plan.frames[0],
            plan.frames[-1],
        )
        return {"accepted": True}

    def task_failed(
        self, task_id: int, lease: str, node: str, message: str, lines: list[str]
    ) -> dict[str, Any]:
        task = self._leased_task(task_id, lease)
        text = (message or "the render failed").strip()[:2000]
        tail = clean_log(lines)[-10:]
        full = text if not tail else text + "\n" + "\n".join(tail)
        # The lines themselves already reached the node's log through its heartbeats.
        gave_up = self.store.fail(task_id, node, full, self.settings.max_failures)
        log.warning("task %s of %s failed on %s: %s", task_id, task["project_id"], node, text)
        if gave_up:
            log.error("project %s in error: %s", task["project_id"], text)
        return {"recorded": True, "project_error": bool(gave_up)}

    def release(self, task_id: int, lease: str) -> dict[str, Any]:
        self._leased_task(task_id, lease)
        self.store.release(task_id, Event.RESET)
        return {"released": True}

    def archive(self, pid: str) -> tuple[Path, str]:
        row = self.store.project(pid)
        return self.data.archive(pid), row["sha256"]


def waiting_reason(project: dict[str, Any], online: list[dict[str, Any]]) -> str | None:
    """Why a project that has work gets none: no node online, or none with a new enough Blender."""
    if project["state"] not in (ProjectState.QUEUED.value, ProjectState.RENDERING.value):
        return None
    if not online:
        return "waiting for a node to come online"
    needed = project.get("file_version")
    if needed and not any(can_open(n["blender_version"], needed) for n in online):
        have = ", ".join(sorted({str(n["blender_version"]) for n in online}))
        return f"waiting for a node with Blender {needed} or newer (online nodes run {have})"
    return None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"PK"


def _safe_stem(title: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in title)
    return "-".join(filter(None, keep.split("-")))[:60]
