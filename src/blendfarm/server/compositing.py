"""The server's background work: leases that run out, and stitching finished chunks.

Frames are stitched as soon as all their chunks are in (so the dashboard shows a thumbnail
early); when every frame is, the result (PNG or mp4) and the raw zip are written under
temporary names and renamed, then the project is done. A crash in between leaves the project
in `compositing`, and the next start composites again from the stored chunks.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import defaultdict
from contextlib import suppress

from ..atomic import replacing
from ..compositor import (
    chunk_name,
    encode_mp4,
    stitch_files,
    write_raw_zip,
    write_thumbnail,
)
from ..errors import NotFound
from ..states import STITCHABLE, ProjectState, TaskState
from ..tiles import chunk_rect
from .farm import Farm
from .rows import ProjectRow, TaskRow

log = logging.getLogger("blendfarm.server")


class Background:
    """Two daemon threads: the reaper (leases, offline nodes) and the compositor."""

    def __init__(self, farm: Farm, interval: float = 0.5):
        self.farm = farm
        self.interval = interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen_version = -1

    def start(self) -> None:
        for target, name in ((self._reap_loop, "reaper"), (self._composite_loop, "compositor")):
            t = threading.Thread(target=target, name=f"blendfarm-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reap()
            except Exception:  # keep the farm alive; the next tick tries again
                log.exception("lease reaper failed")

    def reap(self) -> None:
        store = self.farm.store
        expired = store.tasks.expire_leases()
        if expired:
            log.warning("leases ran out for tasks %s: back in the queue", expired)
        for name in store.nodes.mark_offline(self.farm.settings.node_timeout):
            log.warning(
                "node %s is offline (no heartbeat for %gs)", name, self.farm.settings.node_timeout
            )

    def _composite_loop(self) -> None:
        while not self._stop.wait(self.interval):
            version = self.farm.store.db.version
            if version == self._seen_version:
                continue
            self._seen_version = version
            try:
                self.composite_all()
            except Exception:
                log.exception("compositing pass failed")

    def composite_all(self) -> None:
        """Stitch every frame whose chunks are all in; finish every project that is complete."""
        for row in self.farm.store.projects.all():
            if row.state not in STITCHABLE:
                continue
            try:
                self.composite(row)
            except NotFound:
                continue  # deleted meanwhile
            except Exception as exc:
                log.exception("compositing project %s failed", row.id)
                with suppress(NotFound):
                    self.farm.store.projects.set_error(row.id, f"compositing failed: {exc}")

    def composite(self, project: ProjectRow) -> None:
        store, data = self.farm.store, self.farm.data
        pid = project.id
        # Read the row again: a probe may have landed since the pass listed the projects.
        project = store.projects.get(pid)
        tasks = store.tasks.of_project(pid)
        if not tasks or project.width is None or project.height is None:
            return
        by_frame: dict[int, list[TaskRow]] = defaultdict(list)
        for t in tasks:
            by_frame[t.frame].append(t)
        stitched = store.projects.stitched_frames(pid)
        w, h, n = project.width, project.height, project.tiles
        for frame, chunks in sorted(by_frame.items()):
            if frame in stitched and data.frame(pid, frame).exists():
                continue
            if any(t.state is not TaskState.DONE for t in chunks):
                continue
            out = data.frame(pid, frame)
            stitch_files(
                [
                    (
                        chunk_rect(w, h, n, t.row, t.col),
                        data.chunk(pid, frame, t.row, t.col),
                    )
                    for t in chunks
                ],
                w,
                h,
                out,
            )
            write_thumbnail(out, data.thumbnail(pid))
            store.projects.add_size(pid, out.stat().st_size)
            store.projects.mark_frame(pid, frame)
            stitched.add(frame)
        if store.projects.sync_state(pid) is not ProjectState.COMPOSITING:
            return
        if set(by_frame) - stitched:
            return
        self.finish(project, sorted(by_frame), tasks)

    def finish(self, project: ProjectRow, frames: list[int], tasks: list[TaskRow]) -> None:
        store, data = self.farm.store, self.farm.data
        pid = project.id
        animation = project.animation
        raw = data.raw(pid)
        write_raw_zip(
            (
                (
                    chunk_name(pid, t.frame, t.row, t.col),
                    data.chunk(pid, t.frame, t.row, t.col),
                )
                for t in tasks
            ),
            raw,
        )
        result = data.result(pid, animation)
        if animation:
            if project.fps is None or project.fps_base is None:
                raise RuntimeError(f"project {pid} has no frame rate (it was never probed)")
            encode_mp4((data.frame(pid, f) for f in frames), result, project.fps, project.fps_base)
        else:
            with replacing(result) as tmp:
                shutil.copyfile(data.frame(pid, frames[0]), tmp)
        store.projects.add_size(pid, raw.stat().st_size + result.stat().st_size)
        store.projects.set_result(pid, result.name)
        log.info("project %s done: %s", pid, result.name)
