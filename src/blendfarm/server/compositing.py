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
from typing import Any

from ..atomic import replacing
from ..compositor import (
    chunk_name,
    encode_mp4,
    stitch_files,
    write_raw_zip,
    write_thumbnail,
)
from ..errors import NotFound
from ..states import ProjectState, TaskState
from ..tiles import chunk_rect
from .files import DataDir
from .store import Store

log = logging.getLogger("blendfarm.server")


class Compositor:
    """Stitches frames and finishes projects from the stored chunks."""

    def __init__(self, store: Store, data: DataDir):
        self.store = store
        self.data = data

    def composite_all(self) -> None:
        """Stitch every frame whose chunks are all in; finish every project that is complete."""
        for row in self.store.projects():
            if row["state"] not in (ProjectState.RENDERING.value, ProjectState.COMPOSITING.value):
                continue
            try:
                self.composite(row)
            except NotFound:
                continue  # deleted meanwhile
            except Exception as exc:
                log.exception("compositing project %s failed", row["id"])
                self.store.update_project(
                    row["id"], state=ProjectState.ERROR.value, error=f"compositing failed: {exc}"
                )

    def composite(self, project: dict[str, Any]) -> None:
        store, data = self.store, self.data
        pid = project["id"]
        # Read the row again: a probe may have landed since the pass listed the projects.
        project = store.project(pid)
        tasks = store.tasks(pid)
        if not tasks or project["width"] is None:
            return
        by_frame: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for t in tasks:
            by_frame[t["frame"]].append(t)
        stitched = store.stitched_frames(pid)
        w, h, n = project["width"], project["height"], project["tiles"]
        for frame, chunks in sorted(by_frame.items()):
            if frame in stitched and data.frame(pid, frame).exists():
                continue
            if any(t["state"] != TaskState.DONE.value for t in chunks):
                continue
            out = data.frame(pid, frame)
            stitch_files(
                [
                    (
                        chunk_rect(w, h, n, t["row"], t["col"]),
                        data.chunk(pid, frame, t["row"], t["col"]),
                    )
                    for t in chunks
                ],
                w,
                h,
                out,
            )
            write_thumbnail(out, data.thumbnail(pid))
            store.add_size(pid, out.stat().st_size)
            store.mark_frame(pid, frame)
            stitched.add(frame)
        if store.sync_state(pid) is not ProjectState.COMPOSITING:
            return
        if set(by_frame) - stitched:
            return
        self.finish(project, sorted(by_frame), tasks)

    def finish(
        self, project: dict[str, Any], frames: list[int], tasks: list[dict[str, Any]]
    ) -> None:
        store, data = self.store, self.data
        pid = project["id"]
        animation = bool(project["animation"])
        raw = data.raw(pid)
        write_raw_zip(
            (
                (
                    chunk_name(pid, t["frame"], t["row"], t["col"]),
                    data.chunk(pid, t["frame"], t["row"], t["col"]),
                )
                for t in tasks
            ),
            raw,
        )
        result = data.result(pid, animation)
        if animation:
            encode_mp4(
                (data.frame(pid, f) for f in frames), result, project["fps"], project["fps_base"]
            )
        else:
            with replacing(result) as tmp:
                shutil.copyfile(data.frame(pid, frames[0]), tmp)
        store.add_size(pid, raw.stat().st_size + result.stat().st_size)
        store.update_project(pid, state=ProjectState.DONE.value, result=result.name)
        log.info("project %s done: %s", pid, result.name)
