"""Stitching finished chunks into frames, and frames into the project's result.

Frames are stitched as soon as all their chunks are in (so the dashboard shows a thumbnail
early), by the chunks' kind: PNG chunks into the scene's display format (PNG, JPEG, TIFF), EXR
chunks into its OpenEXR, raw chunks into the frame's passes for its finish task. An
animation's mp4 is encoded while it renders: each frame is fed to an encoder as soon as it
and every frame before it are stitched, so the video is done moments after the last chunk (a
restarted server, or a frame rendered again, starts the encoder over). When every frame is
in, the result (a still's frame in the scene's format; an animation's mp4 and the zip of its
frames) and the raw zip are written under temporary names and renamed, then the project is
done. A crash in between leaves the project in `compositing`, and the next start composites
again from the stored chunks.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from contextlib import suppress
from pathlib import Path

from ..atomic import replacing
from ..compositor import Mp4Writer, write_raw_zip, write_thumbnail
from ..errors import BadChunks, NotFound
from ..formats import FRAME_EXTENSIONS, ChunkKind, frame_extension
from ..states import STITCHABLE, ProjectState, TaskState
from ..tiles import chunk_rect
from .bell import WorkBell
from .files import DataDir
from .finishing import Finishing, is_raw_frame
from .frames_ready import FramesReady
from .rows import ProjectRow, TaskRow
from .stitcher import Stitcher
from .store import Store

log = logging.getLogger("blendfarm.server")

THUMBNAIL_EVERY = 1.0  # seconds between a project's thumbnails while its frames stream in


def frame_file_name(pid: str, frame: int, ext: str) -> str:
    """A frame's name in an animation's frames zip: `<project id>-<frame, 4 digits>.<ext>`."""
    return f"{pid}-{frame:04d}.{ext}"


class Compositor:
    """Stitches frames and finishes projects from the stored chunks."""

    def __init__(
        self, store: Store, data: DataDir, bell: WorkBell, ready: FramesReady | None = None
    ):
        self.store = store
        self.data = data
        self.bell = bell
        self.finishing = Finishing(store, data, bell, ready)
        self.stitcher = Stitcher()  # the pixels, in a process of its own
        self._videos: dict[str, Mp4Writer] = {}  # animations' mp4s being encoded
        self._frame_lists: dict[str, list[int]] = {}  # their frames, in the mp4's order
        self._thumbnailed: dict[str, float] = {}  # project -> its last thumbnail (monotonic)
        self._unshown: dict[str, int] = {}  # project -> its last frame, newer than its thumbnail

    def composite_all(self) -> None:
        """Stitch every frame whose chunks are all in; finish every project that is complete."""
        live: set[str] = set()
        for row in self.store.projects.all():
            if row.state not in STITCHABLE:
                continue
            live.add(row.id)
            try:
                self.composite(row)
            except NotFound:
                continue  # deleted meanwhile
            except Exception as exc:
                log.exception("compositing project %s failed", row.id)
                self._drop_video(row.id)
                with suppress(NotFound):
                    self.store.projects.set_error(row.id, f"compositing failed: {exc}")
        for pid in set(self._videos) - live:  # deleted, cancelled, paused in error...
            self._drop_video(pid)
        for pid in set(self._thumbnailed) - live:
            self._thumbnailed.pop(pid, None)
            self._unshown.pop(pid, None)

    def close(self) -> None:
        """Stop every encoder (the server stops; the next start encodes again)."""
        for pid in list(self._videos):
            self._drop_video(pid)
        self.stitcher.close()

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
        lost: list[tuple[int, int, int]] = []
        for frame, chunks in sorted(by_frame.items()):
            if frame in stitched and self._frame_file(pid, frame) is not None:
                continue
            if any(t.state is not TaskState.DONE for t in chunks):
                continue
            if is_raw_frame(data, pid, chunks):  # its finish task makes the frame
                lost += self.finishing.advance(project, frame, chunks, stitched)
                continue
            thumbnail = self._thumbnail_due(pid)
            try:
                out = self.stitch_frame(project, frame, chunks, thumbnail=thumbnail)
            except BadChunks as exc:
                log.warning("project %s frame %d: %s; rendering them again", pid, frame, exc)
                where = {
                    path: t for t in chunks for path in data.chunk_files(pid, frame, t.row, t.col)
                }
                where.update({data.chunk(pid, frame, t.row, t.col): t for t in chunks})
                lost += [(frame, where[p].row, where[p].col) for p in exc.paths if p in where]
                continue
            if thumbnail:
                self._unshown.pop(pid, None)
            else:
                self._unshown[pid] = frame
            store.projects.add_size(pid, out.stat().st_size)
            store.projects.mark_frame(pid, frame)
            stitched.add(frame)
            self._restitched(pid, frame, self._all_frames(pid, by_frame, frames))
        if self._thumbnail_due(pid, wanted=pid in self._unshown):
            self._show_unshown(pid)
        if lost:
            store.tasks.lose(pid, lost)
            self.bell.ring()
            return
        if project.animation:
            self._feed_video(project, self._all_frames(pid, by_frame, frames), stitched)
        if store.projects.sync_state(pid) is not ProjectState.COMPOSITING:
            return
        if frames is not None:  # every chunk is in: look at the whole project, and finish it
            self.composite(project)
            return
        if set(by_frame) - stitched:
            return
        self.finish(project, sorted(by_frame), tasks)

    def stitch_frame(
        self, project: ProjectRow, frame: int, chunks: list[TaskRow], thumbnail: bool = True
    ) -> Path:
        """Stitch one frame's png or exr chunks into the final frame in the scene's format (a
        frame of raw chunks is Finishing's), and the project's thumbnail from it when
        `thumbnail`; the file written. Chunks of another kind than most of the frame's, or
        whose file is missing or damaged, are named by BadChunks (they render again)."""
        pid, data = project.id, self.data
        assert project.width is not None and project.height is not None
        w, h, n = project.width, project.height, project.tiles
        found: dict[tuple[int, int], tuple[Path, ChunkKind]] = {}
        held: dict[Path, bytes] = {}  # chunks whose image the database keeps
        images = self.store.images.of_frame(pid, frame)
        missing = []
        for t in chunks:
            image = images.get((t.row, t.col))
            if image is not None:
                path = data.chunk(pid, frame, t.row, t.col)
                found[t.row, t.col], held[path] = (path, "png"), image
                continue
            try:
                found[t.row, t.col] = data.find_chunk(pid, frame, t.row, t.col)
            except NotFound:
                missing.append(data.chunk(pid, frame, t.row, t.col))
        if missing:
            raise BadChunks(missing, "are missing")
        kind = Counter(k for _, k in found.values()).most_common(1)[0][0]
        odd = [path for path, k in found.values() if k != kind]
        if odd:
            raise BadChunks(odd, f"are not {kind} chunks like the rest of the frame")
        out = data.frame(pid, frame, frame_extension(kind, project.output_format))
        pieces = [(chunk_rect(w, h, n, r, c), path) for (r, c), (path, _) in found.items()]
        small = data.thumbnail(pid) if thumbnail else None
        self.stitcher.stitch(kind, pieces, w, h, out, project.output_format, small, held)
        for ext in FRAME_EXTENSIONS:  # a frame of another format left by an earlier render
            other = data.frame(pid, frame, ext)
            if other != out:
                other.unlink(missing_ok=True)
        return out

    def _frame_file(self, pid: str, frame: int) -> Path | None:
        try:
            return self.data.find_frame(pid, frame)
        except NotFound:
            return None

    # -- the thumbnail, at most about once a second -------------------------------------------

    def _thumbnail_due(self, pid: str, wanted: bool = True) -> bool:
        """Whether to make the project's thumbnail now (and then it counts as made): its first,
        then one every THUMBNAIL_EVERY seconds; a frame stitched in between waits for the
        next frame past that time, the next pass over the project, or its result."""
        now = time.monotonic()
        if not wanted or now - self._thumbnailed.get(pid, -math.inf) < THUMBNAIL_EVERY:
            return False
        self._thumbnailed[pid] = now
        return True

    def _show_unshown(self, pid: str) -> None:
        """The thumbnail from the project's last stitched frame when the thumbnail is older."""
        frame = self._unshown.pop(pid, None)
        if frame is None:
            return
        path = self._frame_file(pid, frame)
        if path is None:
            return
        try:
            write_thumbnail(path, self.data.thumbnail(pid))
        except (OSError, ValueError) as exc:  # it is only a picture on the dashboard
            log.warning("project %s: no thumbnail from %s: %s", pid, path.name, exc)

    # -- the mp4, frame by frame -----------------------------------------------------------

    def encoded(self, pid: str) -> int:
        """How many frames of the project's mp4 are encoded so far (0: no encoder running)."""
        video = self._videos.get(pid)
        return 0 if video is None else video.frames

    def _all_frames(
        self, pid: str, by_frame: Mapping[int, object], only: Collection[int] | None
    ) -> list[int]:
        """Every frame of the project in order: the frames read (`by_frame`) when the pass
        read them all (`only` is None), else the list kept while its mp4 is encoded (read
        from the tasks once): a pass woken for one frame must not take it for the whole."""
        if only is None:
            self._frame_lists[pid] = sorted(by_frame)
        elif pid not in self._frame_lists:
            self._frame_lists[pid] = self.store.tasks.frames_of(pid)
        return self._frame_lists[pid]

    def _drop_video(self, pid: str) -> None:
        self._frame_lists.pop(pid, None)
        video = self._videos.pop(pid, None)
        if video is not None:
            video.abort()

    def _restitched(self, pid: str, frame: int, frames: list[int]) -> None:
        """A frame was stitched: one the encoder already had was made again (requeued)."""
        video = self._videos.get(pid)
        if video is not None and frame in frames[: video.frames]:
            log.info("project %s: frame %d was rendered again; encoding its mp4 anew", pid, frame)
            self._drop_video(pid)

    def _feed_video(self, project: ProjectRow, frames: list[int], stitched: set[int]) -> None:
        """Give the encoder every frame that is stitched with all frames before it."""
        pid = project.id
        video = self._videos.get(pid)
        if video is not None and any(f not in stitched for f in frames[: video.frames]):
            self._drop_video(pid)  # a frame it had went back to work
            video = None
        if project.fps is None or project.fps_base is None:
            return
        if video is None:
            if frames[0] not in stitched:
                return
            result = self.data.result(pid, "mp4")
            for stale in result.parent.glob(f".{result.name}.*.tmp.mp4"):  # a crash's
                stale.unlink(missing_ok=True)
            video = self._videos[pid] = Mp4Writer(result, project.fps, project.fps_base)
        while video.frames < len(frames) and frames[video.frames] in stitched:
            video.add(self.data.find_frame(pid, frames[video.frames]))

    # -- the result --------------------------------------------------------------------------

    def finish(self, project: ProjectRow, frames: list[int], tasks: list[TaskRow]) -> None:
        store, data = self.store, self.data
        pid = project.id
        raw = data.raw(pid)
        chunks, lost = store.images.sources(data, pid, tasks)
        gone = [(t.frame, t.row, t.col) for t in lost]
        if gone:
            log.warning(
                "project %s: %d chunk file(s) are gone; rendering them again", pid, len(gone)
            )
            self._drop_video(pid)
            store.tasks.lose(pid, gone)
            self.bell.ring()
            return
        self._show_unshown(pid)  # the thumbnail shows the last frame stitched
        write_raw_zip(store.images.read(chunks), raw)
        made = [raw]
        if project.animation:
            made += self._finish_animation(project, frames)
        else:
            frame = data.find_frame(pid, frames[0])
            result = data.result(pid, frame.suffix.lstrip("."))
            with replacing(result) as tmp:
                shutil.copyfile(frame, tmp)
            made.append(result)
        store.projects.add_size(pid, sum(path.stat().st_size for path in made))
        with store.db.transaction():
            # A requeue may have sent it back to work while the result was being written.
            if store.projects.get(pid).state is not ProjectState.COMPOSITING:
                log.info("project %s went back to work while its result was made", pid)
                return
            store.projects.set_result(pid, made[1].name)
        log.info("project %s done: %s", pid, made[1].name)

    def _finish_animation(self, project: ProjectRow, frames: list[int]) -> list[Path]:
        """The mp4 (finished from the encoder fed while rendering, or encoded now) and the
        zip of the frames in the scene's format."""
        pid, data = project.id, self.data
        if project.fps is None or project.fps_base is None:
            raise RuntimeError(f"project {pid} has no frame rate (it was never probed)")
        files = [data.find_frame(pid, f) for f in frames]
        self._frame_lists.pop(pid, None)
        video = self._videos.pop(pid, None)
        if video is None or video.frames != len(frames):
            if video is not None:
                video.abort()
            video = Mp4Writer(data.result(pid, "mp4"), project.fps, project.fps_base)
            try:
                for path in files:
                    video.add(path)
            except BaseException:
                video.abort()
                raise
        video.finish()
        zipped = data.frames_zip(pid)
        write_raw_zip(
            (
                (frame_file_name(pid, f, path.suffix.lstrip(".")), path)
                for f, path in zip(frames, files, strict=True)
            ),
            zipped,
        )
        return [video.out, zipped]
