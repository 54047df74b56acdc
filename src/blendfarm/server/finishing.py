"""Raw chunks and finish tasks on the server: stitch a frame's raw chunks into its passes,
hand the frame to a finish task, and take the finished frame it sends back.

A node renders a chunk raw (a multilayer EXR: the noisy Combined pass, the denoising data and
every pass the compositor reads) when the project's frames are tiled and the scene denoises
or composites (see `Task.finish`). Once every raw chunk of a frame is in, the compositor's
pass asks `advance` to stitch them, bit-exact, into `frames/<frame>.passes.exr` and queue the
frame's finish task; a node denoises and composites the whole frame from those passes in
Blender and sends the final image (kind=final), which becomes the frame. A damaged raw chunk
or passes file sends its chunks back to the queue, as a damaged PNG chunk does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .. import protocol as p
from ..compositor import write_thumbnail, write_thumbnail_array
from ..errors import BadChunks, BadInput, NotFound
from ..exr import is_exr, read_exr, read_rgba, stitch_exr, tone_map
from ..pngio import NotAPng, read_png
from ..states import TaskEvent, TaskKind, TaskState, task_move
from ..tiles import chunk_rect
from .bell import WorkBell
from .durable import GroupSync
from .files import DataDir, sha256_file
from .finish_store import create_finish, finish_of
from .frames_ready import FramesReady
from .rows import ProjectRow, TaskRow
from .store import Store

log = logging.getLogger("blendfarm.server")

RAW = "raw.exr"  # the extension of a raw chunk's file: chunks/<frame>-<row>-<col>.raw.exr
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\x76\x2f\x31\x01", "exr"),
    (b"\xff\xd8\xff", "jpg"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)
FINAL_EXTS = tuple(dict.fromkeys(ext for _, ext in _MAGIC))


def image_ext(path: Path) -> str | None:
    """The extension of the image format `path` starts like (png, exr, jpg, tif); None."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return next((ext for magic, ext in _MAGIC if head.startswith(magic)), None)


def image_size(path: Path, ext: str) -> tuple[int, int]:
    """(width, height) of an image, decoded whole (a cut-off file is refused); ValueError."""
    if ext == "png":
        img = read_png(path)
        return img.shape[1], img.shape[0]
    if ext == "exr":
        exr = read_exr(path)
        return exr.width, exr.height
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except (OSError, SyntaxError) as exc:
        raise ValueError(str(exc)) from None


def is_raw_frame(data: DataDir, pid: str, chunks: list[TaskRow]) -> bool:
    """Whether a frame's chunks were rendered raw (any of them: a frame is one kind)."""
    return any(data.chunk(pid, t.frame, t.row, t.col, RAW).is_file() for t in chunks)


def passes_sha256(data: DataDir, pid: str, frame: int) -> str | None:
    """The sha256 of a frame's passes (what a finish task downloads); None when missing."""
    path = data.passes(pid, frame)
    return sha256_file(path) if path.is_file() else None


class Finishing:
    """Raw chunks in, passes stitched, finish tasks made, finished frames in."""

    def __init__(
        self, store: Store, data: DataDir, bell: WorkBell, ready: FramesReady | None = None
    ):
        self.store = store
        self.data = data
        self.bell = bell
        self.ready = ready  # wakes the compositor when a frame is finished
        self.durable = GroupSync(data.root)

    # -- the compositor's pass ----------------------------------------------------------------

    def advance(
        self, project: ProjectRow, frame: int, chunks: list[TaskRow], stitched: set[int]
    ) -> list[tuple[int, int, int]]:
        """Move a frame whose raw chunks are all done one step on: stitch its passes and
        queue its finish task, or take its finished frame (added to `stitched`). Returns the
        chunks (frame, row, col) found damaged, to render again."""
        store, data, pid = self.store, self.data, project.id
        with store.db.read() as db:
            finish = finish_of(db, pid, frame)
        if finish is not None and finish.state is TaskState.DONE:
            final = self.final_file(pid, frame)
            if final is not None:
                store.projects.mark_frame(pid, frame)
                stitched.add(frame)
                return []
            log.warning(
                "project %s frame %d: its finished frame is gone; finishing it again", pid, frame
            )
            with store.db.transaction() as db:
                db.execute(
                    "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
                    " finished = NULL WHERE id = ?",
                    (task_move(finish.state, TaskEvent.LOST).value, finish.id),
                )
                store.projects.sync_state(pid)
            self.bell.ring()
            return []
        passes = data.passes(pid, frame)
        if finish is not None and passes.is_file():
            return []  # waiting for a node
        if project.width is None or project.height is None:
            return []
        w, h, n = project.width, project.height, project.tiles
        files = {data.chunk(pid, frame, t.row, t.col, RAW): t for t in chunks}
        try:
            stitch_exr(
                [(chunk_rect(w, h, n, t.row, t.col), path) for path, t in files.items()],
                w,
                h,
                passes,
            )
        except BadChunks as exc:
            log.warning("project %s frame %d: raw %s; rendering them again", pid, frame, exc)
            return [(frame, files[path].row, files[path].col) for path in exc.paths]
        self.durable.sync(passes)
        store.projects.add_size(pid, passes.stat().st_size)
        with store.db.transaction() as db:
            made = create_finish(db, pid, frame)
            store.projects.sync_state(pid)  # a new task: the project is rendering again
        if made:
            log.info("project %s frame %d: raw chunks stitched, finish task queued", pid, frame)
            self.bell.ring()
        return []

    def final_file(self, pid: str, frame: int) -> Path | None:
        """The finished frame a finish task sent, whatever its format; None."""
        found = (self.data.frame(pid, frame, ext) for ext in FINAL_EXTS)
        return next((path for path in found if path.is_file()), None)

    # -- what nodes send and fetch ------------------------------------------------------------

    def result(self, task: TaskRow, upload: Path) -> p.Accepted:
        """A finished frame from a node (its lease checked by the caller); idempotent, and
        valid after the lease expired. The upload is consumed. (Raw chunks come in as chunks:
        Dispatch.chunk_result.)"""
        try:
            return self._final(task, upload)
        finally:
            upload.unlink(missing_ok=True)

    def _final(self, task: TaskRow, upload: Path) -> p.Accepted:
        if task.kind is not TaskKind.FINISH:
            raise BadInput(f"task {task.id} is a {task.kind.value}, not a finish")
        if task.state is TaskState.DONE:
            return p.Accepted(accepted=False, reason="the frame is already finished")
        proj = self.store.projects.get(task.project_id)
        ext = image_ext(upload)
        if ext is None:
            raise BadInput("the finished frame is not a PNG, OpenEXR, JPEG or TIFF image")
        try:
            size = image_size(upload, ext)
        except (ValueError, NotAPng) as exc:
            raise BadInput(f"the finished frame is damaged: {exc}") from None
        if size != (proj.width, proj.height):
            raise BadInput(
                f"the finished frame is {size[0]}x{size[1]}, expected {proj.width}x{proj.height}"
            )
        for old in FINAL_EXTS:  # a frame finished before in another format
            if old != ext:
                self.data.frame(proj.id, task.frame, old).unlink(missing_ok=True)
        dest = self.data.frame(proj.id, task.frame, ext)
        accepted = self._store(task, upload, dest)
        if accepted.accepted:
            self._thumbnail(proj.id, dest, ext)
            if self.ready is not None:
                self.ready.add(proj.id, task.frame)  # the compositor takes the frame now
        return accepted

    def _store(self, task: TaskRow, upload: Path, dest: Path) -> p.Accepted:
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = upload.stat().st_size
        os.replace(upload, dest)
        self.durable.sync(dest)  # on the disk before the database says the task is done
        if self.store.tasks.complete(task.id):
            self.store.projects.add_size(task.project_id, size)
        return p.Accepted(accepted=True)

    def _thumbnail(self, pid: str, frame: Path, ext: str) -> None:
        """The dashboard's thumbnail from a finished frame (best effort: a format Pillow
        cannot read keeps the old one)."""
        out = self.data.thumbnail(pid)
        try:
            if ext == "png":
                write_thumbnail(frame, out)
            elif ext == "exr":
                write_thumbnail_array(tone_map(read_rgba(frame)), out)
            else:
                with Image.open(frame) as im:
                    write_thumbnail_array(np.asarray(im.convert("RGBA")), out)
        except (OSError, ValueError) as exc:
            log.warning("project %s: no thumbnail from %s: %s", pid, frame.name, exc)

    def passes(self, task: TaskRow) -> Path:
        """The passes a finish task downloads. A missing or damaged file sends the frame's
        chunks back to the queue (its finish task goes with them): NotFound."""
        if task.kind is not TaskKind.FINISH:
            raise BadInput(f"task {task.id} is a {task.kind.value}, not a finish")
        pid, frame = task.project_id, task.frame
        path = self.data.passes(pid, frame)
        try:
            if not is_exr(path):
                raise ValueError("not an OpenEXR file")
            read_exr(path)
        except (OSError, ValueError) as exc:
            self.lose_frame(pid, frame)
            raise NotFound(
                f"the passes of frame {frame} are missing or damaged ({exc}): its chunks are"
                " rendered again"
            ) from None
        return path

    def lose_frame(self, pid: str, frame: int) -> None:
        """A frame's passes are gone or damaged: its raw chunks render again."""
        chunks = [
            (t.frame, t.row, t.col)
            for t in self.store.tasks.of_project(pid)
            if t.frame == frame and t.state is TaskState.DONE
        ]
        self.data.passes(pid, frame).unlink(missing_ok=True)
        if self.store.tasks.lose(pid, chunks):
            self.bell.ring()
        log.warning("project %s frame %d: passes damaged; its chunks render again", pid, frame)
