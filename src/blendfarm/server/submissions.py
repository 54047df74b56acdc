"""Projects in and out: a submission becomes a project; delete and retry act on one.

When the server can read the scene from the .blend (scene_reader), the project's plan is set
and its chunks are queued at submit, so every node can start at once; its probe still runs
first on one node and reports what may go wrong. Otherwise the probe plans it, as before.

Whoever submits gets the project's owner key, once; changing the project afterwards needs
that key or the admin password.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from .. import protocol as p
from ..archive import choose_blend, inspect_zip, is_blend_file, is_zip_file, wrap_blend
from ..blendversion import read_version
from ..content_hash import content_sha_of
from ..errors import BadInput, Conflict
from ..limits import check_size
from ..settings import Settings
from ..states import ProjectEvent, TaskState, can_move
from .auth import Credentials, Guard, new_owner_key
from .bell import WorkBell
from .files import DataDir, sha256_file
from .rows import NewProject
from .scene_reader import SceneFacts, read_scene_in_zip
from .store import Store
from .validate import Plan, Submission, plan_from_probe
from .views import Views

log = logging.getLogger("blendfarm.server")


class Submissions:
    """Creates, deletes and re-queues projects."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        data: DataDir,
        views: Views,
        guard: Guard,
        bell: WorkBell,
    ):
        self.guard = guard
        self.bell = bell
        self.settings = settings
        self.store = store
        self.data = data
        self.views = views

    def submit(self, upload: Path, filename: str, sub: Submission, sha256: str = "") -> p.Project:
        """Store an uploaded zip (or lone .blend) as a new project; the upload is consumed.
        `sha256`: the upload's, when it was hashed as it arrived."""
        archive = upload
        if sub.frame_start is not None and sub.frame_end is not None:
            try:
                check_size(sub.frame_end - sub.frame_start + 1, sub.tiles, self.settings.limits)
            except BadInput:
                upload.unlink(missing_ok=True)
                raise
        try:
            if not is_zip_file(upload):
                if not is_blend_file(upload):
                    raise BadInput(f"{filename or 'the upload'} is neither a zip nor a .blend file")
                archive = self.data.temp_file(".zip")
                name = Path(filename).name if filename.lower().endswith(".blend") else "scene.blend"
                wrap_blend(upload, archive, name)
            digests: list[tuple[str, str]] = []  # each member's sha256, from the one read
            summary = inspect_zip(
                archive,
                self.settings.max_unpacked,
                self.settings.max_ratio,
                self.settings.max_entries,
                digests,
            )
            blend = choose_blend(summary, sub.blend)
            with zipfile.ZipFile(archive) as zf, zf.open(summary.entries[blend]) as member:
                saved_by = read_version(member)
            if saved_by is None:
                raise BadInput(f"{blend} is not a .blend file")
            planned = self._read_plan(archive, summary.entries[blend], sub)
            sha = sha256 if sha256 and archive == upload else sha256_file(archive)
            key, key_hash = new_owner_key()
            size = archive.stat().st_size
            new = NewProject(
                title=sub.title or Path(blend).stem,
                blend=blend,
                sha256=sha,
                archive_size=size,
                animation=sub.animation,
                frame_start=sub.frame_start,
                frame_end=sub.frame_end,
                tiles=sub.tiles,
                overscan=sub.overscan,
                file_version=f"{saved_by[0]}.{saved_by[1]}",
                owner_key_hash=key_hash,
                device=sub.device,
                priority=sub.priority,
                require_tags=sorted(sub.require_tags),
                frame_order=sub.order,
                paused=sub.paused,
                notify=sub.notify,
                content_sha=content_sha_of(digests, blend),
                finish=sub.finish,
            )
            hold = self.settings.node_timeout
            if planned is None:
                pid = self.store.projects.create(new)
                self.data.adopt_upload(archive, pid)
            else:
                plan, facts = planned
                pid, probe = self.store.plans.create(new, plan, facts.as_probe(), hold)
                self.data.adopt_upload(archive, pid)
                self.store.plans.fill(pid, probe, plan.frames, hold)
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
        if planned is not None:
            plan = planned[0]
            log.info(
                "project %s read from the file: %dx%d, frames %d-%d, %d chunks queued",
                pid,
                plan.width,
                plan.height,
                plan.frames[0],
                plan.frames[-1],
                len(plan.frames) * sub.tiles * sub.tiles,
            )
        self.bell.ring()  # its probe (and its chunks, when the scene was read) wait for nodes
        view = self.views.project(pid)
        view.owner_key = key  # shown once, to the submitter
        return view

    def _read_plan(
        self, archive: Path, member: str, sub: Submission
    ) -> tuple[Plan, SceneFacts] | None:
        """The plan of the submission from the scene read in the file; None when the file
        cannot be read with confidence, or its scene would be refused: the probe then
        decides, with its own words, as for any file."""
        facts = read_scene_in_zip(archive, member, self.data.root / "tmp")
        if facts is None:
            return None
        asked = {
            "frame_start": sub.frame_start,
            "frame_end": sub.frame_end,
            "animation": sub.animation,
            "tiles": sub.tiles,
            "overscan": sub.overscan,
        }
        try:
            return plan_from_probe(asked, facts.as_probe(), self.settings.limits), facts
        except BadInput:
            return None

    def delete(self, pid: str, who: Credentials) -> p.Deleted:
        self.guard.check_owner(self.store.projects.get(pid).owner_key_hash, who, "deleting it")
        held = self.store.images.size_of(pid)  # its small chunks' images go with its rows
        self.store.projects.delete(pid)
        freed = held + self.data.delete_project(pid)
        log.info("project %s deleted, %d bytes freed", pid, freed)
        return p.Deleted(deleted=pid, freed=freed)

    def retry(self, pid: str, who: Credentials) -> p.Project:
        self.guard.check_owner(self.store.projects.get(pid).owner_key_hash, who, "retrying it")
        with self.store.db.transaction():  # checked and retried at once: two retries race
            row = self.store.projects.get(pid)
            if not can_move(row.state, ProjectEvent.RETRY):
                raise Conflict(f"project {pid} is {row.state.value}, not in error or cancelled")
            done = [t for t in self.store.tasks.of_project(pid) if t.state is TaskState.DONE]
            gone = [
                (t.frame, t.row, t.col) for t in self.store.images.sources(self.data, pid, done)[1]
            ]
            self.store.tasks.lose(pid, gone)  # a chunk whose file is gone renders again
            self.store.projects.retry(pid)
        self.bell.ring()
        log.info("project %s put back in the queue", pid)
        return self.views.project(pid)
