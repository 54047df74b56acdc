"""The node protocol: hello, heartbeats, leases, and what nodes send back.

A task is leased under a lease string the server remembers for good, so a late result for an
unfinished chunk is still accepted; anything under a lease never issued for the task is a 409.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .. import protocol as p
from ..errors import BadInput, Conflict
from ..formats import CHUNK_EXTENSIONS as EXT
from ..formats import CHUNK_KINDS, ChunkKind
from ..settings import Settings
from ..states import ProjectEvent, TaskKind, TaskState, can_move
from ..tiles import Rect, blender_border, chunk_rect, grow
from .auth import Guard
from .bell import WorkBell
from .blender_shelf import BlenderShelf
from .chunk_checks import check_chunk_file, check_png_chunk
from .chunk_tasks import stored_plan
from .durable import AsyncGroupSync, GroupSync
from .files import DataDir
from .finishing import passes_sha256
from .frames_ready import FramesReady
from .group_commit import GroupCommit
from .rows import ProjectRow, TaskRow
from .store import Store
from .validate import Plan, clean_log, disagreement, plan_from_probe, same_plan

log = logging.getLogger("blendfarm.server")
# A chunk result at most this big, of a chunk of at most this many pixels, is checked and
# stored on the event loop (`Dispatch.small_result`); bigger ones on a worker thread.
SMALL_RESULT_BYTES = 256 * 1024
SMALL_RESULT_PIXELS = 512 * 512


# A result's answer or the commit that records it, and whose next task to lease with it.
Settling = tuple[p.Accepted | Callable[[], p.Accepted], tuple[str, str, str] | None]


@dataclass(frozen=True)
class StoredChunk:
    """A chunk's file in place, waiting to be durable and recorded (`Dispatch.commit_chunk`)."""

    task_id: int
    lease: str
    project_id: str
    frame: int
    path: Path
    size: int


class Dispatch:
    """Hands out work to nodes and takes their results."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        data: DataDir,
        blender: BlenderShelf,
        guard: Guard,
        bell: WorkBell,
        ready: FramesReady,
    ):
        self.bell = bell
        self.ready = ready
        self.settings = settings
        self.store = store
        self.data = data
        self.blender = blender
        self.guard = guard
        self.durable = GroupSync(data.root)
        self.durable_async = AsyncGroupSync(self.durable)  # the same flushes, for the loop
        # Results the event loop takes at once share one commit (`settle` each).
        self.results: GroupCommit[Settling, p.Accepted] = GroupCommit(store.db, self.settle)

    def _clean(self, lines: list[str]) -> list[str]:
        """A node's log lines as anyone may see them: truncated, and never the node token."""
        token = self.guard.secrets.token
        return [line.replace(token, "****") if token else line for line in clean_log(lines)]

    # -- nodes ------------------------------------------------------------------------------

    def register(self, name: str, info: p.NodeInfo) -> p.Welcome:
        self.store.nodes.seen(name, p.to_builtins(info))
        log.info("node %s online (Blender %s)", name, info.blender_version or "unknown")
        return p.Welcome(
            server_id=self.store.db.server_id,
            blender_sha256=self._blender_sha(),
            node_timeout=self.settings.node_timeout,
            heartbeat=max(1.0, self.settings.node_timeout / 3),
            chunk_timeout=self.settings.chunk_timeout,
        )

    def heartbeat(self, name: str, beat: p.Heartbeat) -> p.HeartbeatAnswer:
        lines = self._clean(beat.log)
        with self.store.db.transaction(changes=False):  # one commit for all of it
            self.store.nodes.seen(name)
            lost = self.store.tasks.renew(name, beat.tasks, self.settings.node_timeout)
            self.store.nodes.append_log(name, lines)
        return p.HeartbeatAnswer(
            server_id=self.store.db.server_id, cancel=lost, blender_sha256=self._blender_sha()
        )

    def leave(self, name: str) -> p.Ok:
        """A node says goodbye: offline, and whatever it still held goes back to the queue."""
        self.store.nodes.left(name)
        self.store.tasks.stops.leave(name)  # its waiting stop request answers now
        if self.store.tasks.release_all(name):
            self.bell.ring()
        return p.Ok(ok=True)

    def _blender_sha(self) -> str | None:
        info = self.blender.info()
        return None if info is None else str(info["sha256"])

    # -- leases -----------------------------------------------------------------------------

    def lease(self, name: str, slot: str = "cpu", warm: str = "") -> p.Task | None:
        """The next task for the `slot` ("gpu" or "cpu") of node `name`, preferring projects
        of the `warm` content (what that slot's Blender has loaded); None when there is
        none for it, when it is disabled or when its sleep schedule says it rests now (the
        chunk it renders still finishes)."""
        with self.store.db.transaction(changes=False):  # one commit for both
            self.store.nodes.seen(name)
            task = self.store.tasks.lease(
                name,
                self.settings.node_timeout,
                self.settings.max_failures,
                slot,
                warm,
                copies=self.settings.duplicates,
            )
        if task is None:
            return None
        if task.copy_lease == task.lease:
            log.info(
                "task %s of %s straggles: a copy renders on %s", task.id, task.project_id, name
            )
        return self._describe(task)

    def _describe(self, task: TaskRow) -> p.Task:
        proj = self.store.projects.get(task.project_id)
        assert task.lease is not None  # a leased task has its lease
        out = p.Task(
            id=task.id,
            lease=task.lease,
            kind=task.kind,
            project=proj.id,
            title=proj.title,
            sha256=proj.sha256,
            archive_size=proj.archive_size,
            archive_url=f"/api/projects/{proj.id}/archive",
            blend=proj.blend,
            timeout=self.settings.chunk_timeout,
            scene_device=proj.device == "scene",
            content_sha=proj.content_sha or "",
            finish=proj.finish,
        )
        if task.kind is TaskKind.CHUNK:
            (w, h), n = frame_size(proj), proj.tiles
            rect = chunk_rect(w, h, n, task.row, task.col)
            render = grow(rect, w, h, proj.overscan) if n > 1 else rect
            border = blender_border(render, w, h) if n > 1 else None
            out.frame, out.row, out.col = task.frame, task.row, task.col
            out.tiles, out.width, out.height = n, w, h
            out.rect, out.render_rect = rect, render
            if border is not None:
                out.border = [border.min_x, border.max_x, border.min_y, border.max_y]
        elif task.kind is TaskKind.FINISH:
            out.frame, (out.width, out.height) = task.frame, frame_size(proj)
            out.passes_url = f"/api/tasks/{task.id}/passes?lease={task.lease}"
            out.passes_sha256 = passes_sha256(self.data, proj.id, task.frame)
        return out

    def check_lease(self, task_id: int, lease: str) -> TaskRow:
        """The task, when `lease` was ever issued for it; Conflict otherwise."""
        task = self.store.tasks.get(task_id)
        if not lease or lease not in task.leases:
            raise Conflict(f"task {task_id} was not leased with that lease")
        return task

    # -- results ----------------------------------------------------------------------------

    def chunk_result(
        self, task_id: int, lease: str, upload: Path, kind: ChunkKind = "png"
    ) -> p.Accepted:
        """Take a chunk's image (from a node): a PNG, or an OpenEXR for kind exr and raw, of
        the chunk's size and readable whole; idempotent, and valid after the lease expired.
        (The result route runs the same three steps, flushing through `AsyncGroupSync`.)"""
        stored = self.store_chunk(task_id, lease, upload, kind)
        if isinstance(stored, p.Accepted):
            return stored
        self.durable.sync(stored.path)  # on the disk before the database says the chunk is done
        return self.commit_chunk(stored)

    def small_result(self, task: TaskRow, kind: ChunkKind, declared: int | None) -> Rect | None:
        """The chunk's rectangle when its result is cheap enough to check and store on the
        event loop (`chunk_in_memory`): a PNG whose declared size and whose chunk's pixels
        are both small (checking inflates every pixel, so the pixels bound the work, not the
        bytes sent); None otherwise."""
        if kind != "png" or declared is None or declared > SMALL_RESULT_BYTES:
            return None
        if task.kind is not TaskKind.CHUNK:
            return None
        proj = self.store.projects.get(task.project_id)
        if proj.width is None or proj.height is None:
            return None
        rect = chunk_rect(proj.width, proj.height, proj.tiles, task.row, task.col)
        return rect if rect.width * rect.height <= SMALL_RESULT_PIXELS else None

    def store_chunk(
        self, task_id: int, lease: str, upload: Path, kind: ChunkKind = "png"
    ) -> StoredChunk | p.Accepted:
        """Check a chunk's image and put it in place (not yet durable, not yet recorded):
        what `commit_chunk` records once the file is on the disk, or the answer already
        (the chunk is done). The upload is gone afterwards either way."""
        try:
            found = self._chunk_to_take(task_id, lease)
            if isinstance(found, p.Accepted):
                return found
            task, rect = found
            check_chunk_file(upload, kind, rect.width, rect.height)
            dest = self.data.chunk(task.project_id, task.frame, task.row, task.col, EXT[kind])
            dest.parent.mkdir(parents=True, exist_ok=True)
            size = upload.stat().st_size
            os.replace(upload, dest)
            for other in self.other_kinds(dest, task):  # from an earlier render of it
                other.unlink(missing_ok=True)
            return StoredChunk(task_id, lease, task.project_id, task.frame, dest, size)
        finally:
            upload.unlink(missing_ok=True)

    def chunk_in_memory(
        self, task_id: int, lease: str, rect: Rect, data: bytes
    ) -> StoredChunk | p.Accepted:
        """Check a small PNG chunk held in memory, of the chunk `rect` (`small_result`):
        where it goes, for the flusher to write (`AsyncGroupSync.place`), or the answer
        already (the chunk is done)."""
        task = self.check_lease(task_id, lease)  # again: it may have been done meanwhile
        if task.state is TaskState.DONE:
            return p.Accepted(accepted=False, reason="the chunk is already done")
        check_png_chunk(data, rect.width, rect.height)
        dest = self.data.chunk(task.project_id, task.frame, task.row, task.col, EXT["png"])
        return StoredChunk(task_id, lease, task.project_id, task.frame, dest, len(data))

    def chunk_paths(self, task: TaskRow) -> list[Path]:
        """Where the chunk's file is, of each kind."""
        pid, frame, row, col = task.project_id, task.frame, task.row, task.col
        return [self.data.chunk(pid, frame, row, col, EXT[kind]) for kind in CHUNK_KINDS]

    def other_kinds(self, dest: Path, task: TaskRow) -> list[Path]:
        """The chunk's files of other kinds than `dest` (left by an earlier render of it)."""
        return [path for path in self.chunk_paths(task) if path != dest]

    def _chunk_to_take(self, task_id: int, lease: str) -> tuple[TaskRow, Rect] | p.Accepted:
        task = self.check_lease(task_id, lease)
        if task.kind is not TaskKind.CHUNK:
            raise BadInput(f"task {task_id} is a {task.kind.value}, not a chunk")
        if task.state is TaskState.DONE:
            return p.Accepted(accepted=False, reason="the chunk is already done")
        proj = self.store.projects.get(task.project_id)
        return task, chunk_rect(*frame_size(proj), proj.tiles, task.row, task.col)

    def commit_image(self, stored: StoredChunk, image: bytes, task: TaskRow) -> p.Accepted:
        """Record a small chunk (`chunk_in_memory`) as done with its image in the database
        (`chunk_images`): no file, no flush to wait for. A chunk leased before may have
        files from an earlier render: they go once it is taken, so they cannot stand for it."""
        earlier = self.chunk_paths(task) if len(task.leases) > 1 else []
        return self.commit_chunk(stored, image, earlier)

    def commit_chunk(
        self, stored: StoredChunk, image: bytes | None = None, replaces: list[Path] | None = None
    ) -> p.Accepted:
        """Record a chunk stored by `store_chunk` as done, once its file is durable (or with
        its `image` kept in the database, the files `replaces` removed); the compositor
        stitches its frame when it was the frame's last. A chunk done already (another copy
        won) is left as it is."""
        with self.store.db.transaction(changes=False) as db:  # one commit for all of it
            if not self.store.tasks.complete(stored.task_id, stored.lease):
                return p.Accepted(accepted=True)
            if image is None:
                self.store.images.drop(db, stored.task_id)  # the file is the chunk now
            else:
                self.store.images.put(db, stored.task_id, stored.project_id, stored.frame, image)
                for path in replaces or []:
                    path.unlink(missing_ok=True)
            self.store.projects.add_size(stored.project_id, stored.size)
            if not self.store.projects.frame_unfinished(stored.project_id, stored.frame):
                # The frame's last chunk: the compositor stitches it once this commits.
                self.store.db.after_commit(
                    functools.partial(self.ready.add, stored.project_id, stored.frame)
                )
        return p.Accepted(accepted=True)

    def settle(self, work: Settling) -> p.Accepted:
        """The answer to a result: the answer already, or what committing it answers; with
        the follow-up (node, slot, warm), that node's next task leased in the same
        transaction. Run by `results` (GroupCommit): every result the event loop takes at
        once shares one commit, most of a chunk's cost to the server."""
        result, follow = work
        answer = result if isinstance(result, p.Accepted) else result()
        if follow is not None:
            answer.next = self.lease(*follow)
        return answer

    def probe_result(self, task_id: int, lease: str, probe: p.Probe) -> p.Accepted:
        task = self.check_lease(task_id, lease)
        already = p.Accepted(accepted=False, reason="the probe is already done")
        if task.kind is not TaskKind.PROBE:
            raise BadInput(f"task {task_id} is a {task.kind.value}, not a probe")
        if task.state is TaskState.DONE:
            return already
        proj = self.store.projects.get(task.project_id)
        raw = p.to_builtins(probe)
        read = stored_plan(proj) if proj.scene is not None else None
        asked = msgspec.structs.asdict(proj)
        if read is not None and proj.scene_frames:
            asked.update(frame_start=None, frame_end=None)  # the scene's range, as Blender sees it
        try:
            plan = plan_from_probe(asked, raw, self.settings.limits)
        except BadInput as exc:
            if read is not None and not can_move(proj.state, ProjectEvent.FAILED):
                # Rendered and done by the plan read from the file: keep it, and say so.
                plan = dataclasses.replace(read, warnings=[*proj.warnings, str(exc)])
                return self._planned(task_id, proj, plan, raw) or already
            # The probe goes back to the queue, so `retry` probes again (the file may be fixed).
            if not self.store.tasks.reject_probe(task_id, str(exc)):
                return already
            return p.Accepted(accepted=True)
        if read is not None and not same_plan(read, plan):
            if self.store.plans.drop_unrendered(proj.id, task_id):
                log.info("project %s: the probe replans it (nothing was rendered yet)", proj.id)
            else:
                plan = dataclasses.replace(
                    read, warnings=[*plan.warnings, disagreement(read, plan)]
                )
        return self._planned(task_id, proj, plan, raw) or already

    def _planned(
        self, task_id: int, proj: ProjectRow, plan: Plan, raw: dict[str, Any]
    ) -> p.Accepted | None:
        """Store the plan a probe settled and make the chunks it lacks; None when another
        result for the probe was first."""
        if not self.store.tasks.finish_probe(task_id, plan, raw):
            return None
        self.bell.ring()  # its chunks wait for nodes
        log.info(
            "project %s probed: %dx%d, frames %d-%d",
            proj.id,
            plan.width,
            plan.height,
            plan.frames[0],
            plan.frames[-1],
        )
        return p.Accepted(accepted=True)

    def task_failed(self, task_id: int, lease: str, failure: p.Failure) -> p.FailureAnswer:
        task = self.check_lease(task_id, lease)
        node = failure.node or "unknown"
        text = self._clean([(failure.message or "the render failed").strip()[:2000]])[0]
        tail = self._clean(failure.log)[-10:]
        full = text if not tail else text + "\n" + "\n".join(tail)
        # The lines themselves already reached the node's log through its heartbeats.
        gave_up = self.store.tasks.fail(task_id, lease, node, full, self.settings.max_failures)
        self.bell.ring()  # the task is back in the queue for other nodes
        log.warning("task %s of %s failed on %s: %s", task_id, task.project_id, node, text)
        if gave_up:
            log.error("project %s in error: %s", task.project_id, text)
        return p.FailureAnswer(recorded=True, project_error=bool(gave_up))

    def release(self, task_id: int, lease: str) -> p.Ok:
        self.check_lease(task_id, lease)
        if self.store.tasks.release(task_id, lease):
            self.bell.ring()
        return p.Ok(ok=True)

    def archive(self, pid: str) -> tuple[Path, str]:
        row = self.store.projects.get(pid)
        return self.data.archive(pid), row.sha256


def frame_size(project: ProjectRow) -> tuple[int, int]:
    """The frame size of a planned project; Conflict before it has a plan."""
    if project.width is None or project.height is None:
        raise Conflict(f"project {project.id} has not been probed yet")
    return project.width, project.height
