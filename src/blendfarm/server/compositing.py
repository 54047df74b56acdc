"""Stitching finished chunks into frames, and frames into the project's result.

Frames are stitched as soon as all their chunks are in (so the dashboard shows a thumbnail
early); when every frame is, the result (PNG or mp4) and the raw zip are written under
temporary names and renamed, then the project is done. A crash in between leaves the project
in `compositing`, and the next start composites again from the stored chunks.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Collection
from contextlib import suppress

from ..atomic import replacing
from ..compositor import (
    BadChunks,
    chunk_name,
    encode_mp4,
    stitch_files,
    write_raw_zip,
)
from ..errors import NotFound
from ..states import STITCHABLE, ProjectState, TaskState
from ..tiles import chunk_rect
from .bell import WorkBell
from .files import DataDir
from .rows import ProjectRow, TaskRow
from .store import Store

log = logging.getLogger("blendfarm.server")


class Compositor:
    """Stitches frames and finishes projects from the stored chunks."""

    def __init__(self, store: Store, data: DataDir, bell: WorkBell):
        self.store = store
        self.data = data
        self.bell = bell

    def composite_all(self) -> None:
        """Stitch every frame whose chunks are all in; finish every project that is complete."""
        for row in self.store.projects.all():
            if row.state not in STITCHABLE:
                continue
            try:
                self.composite(row)
            except NotFound:
                continue  # deleted meanwhile
            except Exception as exc:
                log.exception("compositing project %s failed", row.id)
                with suppress(NotFound):
                    self.store.projects.set_error(row.id, f"compositing failed: {exc}")

    def composite(self, project: ProjectRow, frames: Collection[int] | None = None) -> None:
        """Stitch the project's frames whose chunks are all in (only `frames` when given: their
        last chunk just landed) and finish it when every frame is."""
        store, data = self.store, self.data
        pid = project.id
        # Read the row again: a probe may have landed since the pass listed the projects.
        project = store.projects.get(pid)
        tasks = store.tasks.of_project(pid, frames=frames)
        if not tasks or project.width is None or project.height is None:
            return
        by_frame: dict[int, list[TaskRow]] = defaultdict(list)
        for t in tasks:
            by_frame[t.frame].append(t)
        stitched = store.projects.stitched_frames(pid)
        w, h, n = project.width, project.height, project.tiles
        lost: list[tuple[int, int, int]] = []
        for frame, chunks in sorted(by_frame.items()):
            if frame in stitched and data.frame(pid, frame).exists():
                continue
            if any(t.state is not TaskState.DONE for t in chunks):
                continue
            out = data.frame(pid, frame)
            files = {data.chunk(pid, frame, t.row, t.col): t for t in chunks}
            try:
                stitch_files(
                    [(chunk_rect(w, h, n, t.row, t.col), path) for path, t in files.items()],
                    w,
                    h,
                    out,
                    thumbnail=data.thumbnail(pid),
                )
            except BadChunks as exc:
                log.warning("project %s frame %d: %s; rendering them again", pid, frame, exc)
                lost += [(frame, files[p].row, files[p].col) for p in exc.paths]
                continue
            store.projects.add_size(pid, out.stat().st_size)
            store.projects.mark_frame(pid, frame)
            stitched.add(frame)
        if lost:
            store.tasks.lose(pid, lost)
            self.bell.ring()
            return
        if store.projects.sync_state(pid) is not ProjectState.COMPOSITING:
            return
        if frames is not None:  # every chunk is in: look at the whole project, and finish it
            self.composite(project)
            return
        if set(by_frame) - stitched:
            return
        self.finish(project, sorted(by_frame), tasks)

    def finish(self, project: ProjectRow, frames: list[int], tasks: list[TaskRow]) -> None:
        store, data = self.store, self.data
        pid = project.id
        animation = project.animation
        raw = data.raw(pid)
        gone = [
            (t.frame, t.row, t.col)
            for t in tasks
            if not data.chunk(pid, t.frame, t.row, t.col).is_file()
        ]
        if gone:
            log.warning(
                "project %s: %d chunk file(s) are gone; rendering them again", pid, len(gone)
            )
            store.tasks.lose(pid, gone)
            self.bell.ring()
            return
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
        with store.db.transaction():
            # A requeue may have sent it back to work while the result was being written.
            if store.projects.get(pid).state is not ProjectState.COMPOSITING:
                log.info("project %s went back to work while its result was made", pid)
                return
            store.projects.set_result(pid, result.name)
        log.info("project %s done: %s", pid, result.name)
