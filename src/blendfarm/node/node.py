"""`blendfarm node`: ask the server for work, render it with Blender, send it back.

The node never gives up on the server: every call is retried with backoff and jitter. A
heartbeat thread renews the lease while Blender runs and ships Blender's log lines. Projects
are downloaded once (cached by content hash, verified) and unpacked safely.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .. import __version__
from ..archive import remove_tree, safe_extract
from ..errors import BlenderFailed, BlendfarmError
from ..pngio import NotAPng, read_png, write_png
from ..settings import NodeSettings
from ..tiles import Rect, crop_box
from .blender import Renderer, SessionRenderer, blender_version, find_blender
from .blender_fetch import fetch_blender
from .downloads import download_verified, error_text
from .names import node_name

log = logging.getLogger("blendfarm.node")
IDLE_WAIT = (0.5, 5.0)
RETRY_WAIT = (0.5, 15.0)
MAX_UNPACKED = 200 * 1024**3
PROJECTS_KEPT = 8  # unpacked projects a node keeps; older ones are downloaded again if needed


class Stopped(Exception):
    """The node was asked to stop."""


class Node:
    """One render node. `run()` loops until stopped (or `max_chunks` / `burst` say so)."""

    def __init__(
        self,
        settings: NodeSettings,
        client: httpx.Client | None = None,
        renderer: Renderer | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self.work = settings.work_dir.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.name = node_name(self.work, settings.name)
        self.say = say or (lambda msg: log.info(msg))
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self.client = client or httpx.Client(
            base_url=settings.server.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(60.0, connect=10.0),
        )
        if client is not None and settings.token:
            self.client.headers.update(headers)
        self._renderer = renderer
        self._own_renderer = renderer is None
        self.blender_sha = ""
        self._new_blender = threading.Event()
        self._server_changed = threading.Event()
        self.blender_version = ""
        self.stop_event = threading.Event()
        self.heartbeat_every = 10.0
        self.server_id = ""
        self._current: dict[str, Any] | None = None
        self._task_lock = threading.Lock()
        self._blender_done = False
        self._lost = threading.Event()
        self._log_lines: list[str] = []
        self._log_lock = threading.Lock()
        self.chunks_done = 0

    # -- plumbing ---------------------------------------------------------------------------

    def log_line(self, line: str) -> None:
        with self._log_lock:
            self._log_lines.append(line[:2000])
            if len(self._log_lines) > 2000:
                del self._log_lines[:-1000]

    def _take_log(self) -> list[str]:
        with self._log_lock:
            lines, self._log_lines = self._log_lines, []
        return lines

    def _call(self, method: str, url: str, *, retry: bool = True, **kw: Any) -> httpx.Response:
        """An API call, retried with backoff and jitter while the server is away."""
        wait = RETRY_WAIT[0]
        while True:
            if self.stop_event.is_set() and retry:
                raise Stopped()
            try:
                resp = self.client.request(method, url, **kw)
            except httpx.TransportError as exc:
                if not retry:
                    raise BlendfarmError(f"server unreachable: {exc}") from None
                self.say(f"server unreachable ({exc.__class__.__name__}); retrying in {wait:.0f} s")
                self.stop_event.wait(wait * random.uniform(0.5, 1.5))
                wait = min(wait * 2, RETRY_WAIT[1])
                continue
            # 507 (server disk full) is an answer about this request, not a server that is away.
            if resp.status_code >= 500 and resp.status_code != 507 and retry:
                self.stop_event.wait(wait * random.uniform(0.5, 1.5))
                wait = min(wait * 2, RETRY_WAIT[1])
                continue
            if resp.status_code == 401:
                raise BlendfarmError("the server refused this node's token (--token)")
            return resp

    @property
    def renderer(self) -> Renderer:
        """The renderer, started on first use with the Blender `_choose_blender` picks."""
        if self._renderer is None:
            self._renderer = self._start_renderer()
        return self._renderer

    def _start_renderer(self) -> Renderer:
        executable = self._choose_blender()
        self.blender_version = blender_version(executable)
        using = f"rendering with Blender {self.blender_version} ({executable})"
        self.say(using)
        self.log_line(f"blendfarm: {using}")
        return SessionRenderer(
            executable,
            self.log_line,
            self.settings.threads,
            self.settings.warm,
            self.settings.chunk_timeout,
            self.settings.trust_scripts,
        )

    def _choose_blender(self) -> str:
        """--blender when given; else the server's Blender; else `blender` on PATH; else wait."""
        wait = 5.0
        while True:
            if self.settings.blender:
                return find_blender(self.settings.blender)
            resp = self._call("GET", "/api/blender")
            info = resp.json() if resp.status_code == 200 else {}
            if info.get("available"):
                self.blender_sha = str(info["sha256"])
                return str(fetch_blender(self.client, self.work, info, self.say))
            self.blender_sha = ""
            try:
                return find_blender("")
            except BlendfarmError:
                self.say(
                    "no Blender to render with: the server has none (blendfarm blender upload) "
                    "and there is no `blender` on PATH (--blender); waiting"
                )
                if self.stop_event.wait(wait):
                    raise Stopped() from None
                wait = min(wait * 2, 60.0)

    def _switch_blender(self) -> None:
        """The server has a new Blender: drop the old one between chunks and register again."""
        self._new_blender.clear()
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
        self.say("the server has a new Blender: switching")
        self.register()

    def register(self) -> None:
        """Say hello to the server with the Blender this node renders with (chosen first)."""
        if self._renderer is None:  # choosing Blender is what makes its version known
            self._renderer = self._start_renderer()
        body = {
            "blender_version": self.blender_version or "unknown",
            "blender_sha256": self.blender_sha,
            "hostname": socket.gethostname(),
            "cores": os.cpu_count() or 1,
            "version": __version__,
        }
        resp = self._call("POST", f"/api/nodes/{self.name}/register", json=body)
        if resp.status_code != 200:
            raise BlendfarmError(error_text(resp))
        welcome = resp.json()
        self.heartbeat_every = float(welcome.get("heartbeat", 10.0))
        self._new_server(welcome.get("server_id", ""))
        self.say(
            f"node {self.name} registered with {self.settings.server} "
            f"(Blender {self.blender_version})"
        )

    def _new_server(self, server_id: str) -> None:
        """A different server identity (database purged): cached projects are stale."""
        marker = self.work / "server-id"
        old = marker.read_text().strip() if marker.exists() else ""
        if server_id and old and old != server_id:
            self.say("the server's identity changed: dropping cached projects")
            remove_tree(self.work / "projects")
        if server_id:
            marker.write_text(server_id)
        self.server_id = server_id

    # -- heartbeat ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(self.heartbeat_every):
            self.heartbeat()

    def heartbeat(self) -> None:
        current = self._current
        lines = self._take_log()
        body = {"tasks": [current["id"]] if current else [], "log": lines}
        try:
            resp = self.client.post(f"/api/nodes/{self.name}/heartbeat", json=body)
        except httpx.TransportError:
            with self._log_lock:  # keep them for the next beat
                self._log_lines[:0] = lines
            return
        if resp.status_code != 200:
            return
        answer = resp.json()
        if current and current["id"] in answer.get("cancel", []):
            with self._task_lock:
                # The answer may be about a task finished meanwhile: only stop the one it names.
                if self._current is current and not self._blender_done:
                    self.say(f"lost the lease on task {current['id']}: stopping Blender")
                    self._lost.set()
                    if self._renderer is not None:
                        self._renderer.abort()
        if self._own_renderer and not self.settings.blender:
            if (answer.get("blender_sha256") or "") != self.blender_sha:
                self._new_blender.set()
        if answer.get("server_id") and answer["server_id"] != self.server_id:
            self._server_changed.set()  # handled between tasks, not under a running render

    # -- projects -----------------------------------------------------------------------------

    def project_dir(self, task: dict[str, Any]) -> Path:
        """The unpacked project of `task`, downloaded and verified once."""
        sha = str(task["sha256"])
        if not sha.isalnum():
            raise BlendfarmError("the server sent a bad project hash")
        folder = self.work / "projects" / sha
        if (folder / ".complete").exists():
            (folder / ".complete").touch()  # recently used: kept when the cache is trimmed
            return folder
        downloads = self.work / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        part = downloads / f"{sha}.zip.part"
        download_verified(self.client, task["archive_url"], part, sha, f"project {task['project']}")
        staging = self.work / "projects" / f".{sha}.tmp"
        remove_tree(staging)
        staging.mkdir(parents=True)
        try:
            safe_extract(part, staging, MAX_UNPACKED)
            (staging / ".complete").touch()
            remove_tree(folder)
            staging.rename(folder)
        finally:
            part.unlink(missing_ok=True)
            remove_tree(staging)
        self.say(f"project {task['project']} downloaded ({task.get('archive_size', 0)} bytes)")
        trim_cache(self.work / "projects", keep=PROJECTS_KEPT)
        return folder

    # -- the work -----------------------------------------------------------------------------

    def run_task(self, task: dict[str, Any]) -> None:
        """Render one task and report it; failures are reported to the server, not raised."""
        tid, lease = task["id"], task["lease"]
        with self._task_lock:
            self._current = task
            self._blender_done = False
            self._lost.clear()
        try:
            folder = self.project_dir(task)
            blend = (folder / task["blend"]).resolve()
            if not blend.is_relative_to(folder) or not blend.exists():
                raise BlendfarmError(f"{task['blend']} is not in the project")
            if task["kind"] == "probe":
                probe = self.renderer.probe(blend)
                with self._task_lock:
                    self._blender_done = True
                self._call("POST", f"/api/tasks/{tid}/probe", params={"lease": lease}, json=probe)
                self.say(
                    f"probed {task['title']}: {probe['resolution_x']}x"
                    f"{probe['resolution_y']} at {probe['resolution_percentage']}%"
                )
                return
            out_dir = self.work / "out"
            out_dir.mkdir(exist_ok=True)
            output = out_dir / f"{tid}.png"
            output.unlink(missing_ok=True)
            self.say(
                f"rendering {task['title']} frame {task['frame']} chunk {task['row']},{task['col']}"
            )
            self.renderer.render(
                blend,
                {
                    "frame": task["frame"],
                    "border": task.get("border"),
                    "output": str(output),
                    "threads": self.settings.threads,
                    "timeout": float(task.get("timeout") or self.settings.chunk_timeout),
                },
            )
            with self._task_lock:
                self._blender_done = True  # from here on a lost lease has nothing to stop
            if self.stop_event.is_set():
                raise Stopped()
            if self._lost.is_set():
                self.say(f"task {tid} went to another node meanwhile: result dropped")
                return
            finish_chunk(output, Rect(**task["render_rect"]), Rect(**task["rect"]))
            with open(output, "rb") as fh:
                resp = self._call(
                    "PUT", f"/api/tasks/{tid}/result", params={"lease": lease}, content=fh.read()
                )
            output.unlink(missing_ok=True)
            if resp.status_code == 507:
                raise BlendfarmError(f"the server could not store the chunk: {error_text(resp)}")
            if resp.status_code != 200:
                self.say(f"the server refused chunk {tid}: {error_text(resp)}")
            else:
                self.chunks_done += 1
        except Stopped:
            self._hand_back(task)
            raise
        except (BlendfarmError, OSError, ValueError, KeyError) as exc:
            if self.stop_event.is_set():
                self._hand_back(task)
                raise Stopped() from None
            if self._lost.is_set():
                self.say(f"task {tid} went to another node meanwhile: Blender stopped")
                return
            message = str(exc) if not isinstance(exc, OSError) else f"node error: {exc}"
            tail = exc.log if isinstance(exc, BlenderFailed) else []
            self.say(f"task {tid} failed: {message}")
            self._call(
                "POST",
                f"/api/tasks/{tid}/fail",
                params={"lease": lease},
                json={"node": self.name, "message": message, "log": tail[-30:]},
            )
        finally:
            with self._task_lock:
                self._current = None

    def _hand_back(self, task: dict[str, Any]) -> None:
        try:
            self.client.post(
                f"/api/tasks/{task['id']}/release", params={"lease": task["lease"]}, timeout=5
            )
        except httpx.HTTPError:
            pass  # the lease will run out on its own

    def run(self, max_chunks: int | None = None, burst: bool = False) -> int:
        """Work until stopped; `max_chunks` tasks at most; `burst` stops when the queue is empty.

        Returns how many tasks this call handled.
        """
        handled = 0
        beat: threading.Thread | None = None
        try:
            self.register()
            beat = threading.Thread(target=self._heartbeat_loop, daemon=True)
            beat.start()
            idle = IDLE_WAIT[0]
            while not self.stop_event.is_set():
                if max_chunks is not None and handled >= max_chunks:
                    break
                if self._new_blender.is_set():
                    self._switch_blender()
                if self._server_changed.is_set():
                    self._server_changed.clear()
                    self.register()  # learns the new identity and drops stale projects
                resp = self._call("POST", f"/api/nodes/{self.name}/lease")
                if resp.status_code == 204:
                    if burst:
                        break
                    self.stop_event.wait(idle * random.uniform(0.8, 1.2))
                    idle = min(idle * 1.5, IDLE_WAIT[1])
                    continue
                if resp.status_code == 507:  # the server's disk is full: wait, it may be freed
                    self.say(f"the server cannot take work: {error_text(resp)}; waiting")
                    self.stop_event.wait(IDLE_WAIT[1])
                    continue
                if resp.status_code != 200:
                    raise BlendfarmError(error_text(resp))
                idle = IDLE_WAIT[0]
                self.run_task(resp.json())
                handled += 1
                self.heartbeat()
        except Stopped:
            pass
        finally:
            self.stop_event.set()
            if self._renderer is not None:
                self._renderer.close()
            if beat is not None:
                beat.join(timeout=5)
            try:
                self.client.post(f"/api/nodes/{self.name}/leave", timeout=5)
            except httpx.HTTPError:
                pass
        return handled

    def stop(self) -> None:
        """Stop soon: kill Blender, hand the current task back, leave."""
        self.stop_event.set()
        if self._renderer is not None:
            self._renderer.abort()


def trim_cache(folder: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` most recently used unpacked projects; returns those deleted."""
    done = sorted(
        (p for p in folder.iterdir() if (p / ".complete").exists()),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    for old in done[keep:]:
        remove_tree(old)
    return done[keep:]


def finish_chunk(path: Path, rendered: Rect, wanted: Rect) -> None:
    """Check what Blender wrote (whole, the expected size) and cut the overscan off, in place."""
    try:
        img = read_png(path)
    except NotAPng as exc:
        raise BlendfarmError(f"Blender wrote a damaged image ({exc}); is the disk full?") from None
    if img.shape[:2] != (rendered.height, rendered.width):
        raise BlendfarmError(
            f"Blender rendered {img.shape[1]}x{img.shape[0]}, expected "
            f"{rendered.width}x{rendered.height}"
        )
    if rendered != wanted:
        box = crop_box(rendered, wanted)
        write_png(path, img[box.y0 : box.y1, box.x0 : box.x1])
