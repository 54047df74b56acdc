"""Projects in and out: a submission becomes a project; delete and retry act on one.

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
from ..errors import BadInput, Conflict
from ..limits import check_size
from ..settings import Settings
from ..states import ProjectEvent, TaskState, can_move
from .auth import Credentials, Guard, new_owner_key
from .bell import WorkBell
from .files import DataDir, sha256_file
from .rows import NewProject
from .store import Store
from .validate import Submission
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
            summary = inspect_zip(
                archive,
                self.settings.max_unpacked,
                self.settings.max_ratio,
                self.settings.max_entries,
            )
            blend = choose_blend(summary, sub.blend)
            with zipfile.ZipFile(archive) as zf, zf.open(summary.entries[blend]) as member:
                saved_by = read_version(member)
            if saved_by is None:
                raise BadInput(f"{blend} is not a .blend file")
            sha = sha256 if sha256 and archive == upload else sha256_file(archive)
            key, key_hash = new_owner_key()
            size = archive.stat().st_size
            pid = self.store.projects.create(
                NewProject(
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
                )
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
        self.bell.ring()  # its probe waits for a node
        view = self.views.project(pid)
        view.owner_key = key  # shown once, to the submitter
        return view

    def delete(self, pid: str, who: Credentials) -> p.Deleted:
        self.guard.check_owner(self.store.projects.get(pid).owner_key_hash, who, "deleting it")
        self.store.projects.delete(pid)
        freed = self.data.delete_project(pid)
        log.info("project %s deleted, %d bytes freed", pid, freed)
        return p.Deleted(deleted=pid, freed=freed)

    def retry(self, pid: str, who: Credentials) -> p.Project:
        self.guard.check_owner(self.store.projects.get(pid).owner_key_hash, who, "retrying it")
        with self.store.db.transaction():  # checked and retried at once: two retries race
            row = self.store.projects.get(pid)
            if not can_move(row.state, ProjectEvent.RETRY):
                raise Conflict(f"project {pid} is {row.state.value}, not in error or cancelled")
            gone = [
                (t.frame, t.row, t.col)
                for t in self.store.tasks.of_project(pid)
                if t.state is TaskState.DONE
                and not self.data.chunk(pid, t.frame, t.row, t.col).is_file()
            ]
            self.store.tasks.lose(pid, gone)  # a chunk whose file is gone renders again
            self.store.projects.retry(pid)
        self.bell.ring()
        log.info("project %s put back in the queue", pid)
        return self.views.project(pid)
