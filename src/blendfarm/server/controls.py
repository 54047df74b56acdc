"""What the person running the farm does to work under way: priority, pause, resume, cancel,
requeue part of a project (owner key or admin password), and disable or enable a node (admin).

Each action checks who asks, then whether the state machine has the move (a Conflict with a
sentence when it has not), then makes it in one transaction.
"""

from __future__ import annotations

import logging
import re
from contextlib import suppress
from pathlib import Path

from .. import protocol as p
from ..compositor import write_raw_zip
from ..errors import BadInput, Conflict, NotFound
from ..parsing import parse_frames
from ..states import ProjectEvent, ProjectState, TaskState, can_move
from .auth import Credentials, Guard
from .bell import WorkBell
from .files import DataDir
from .store import Store
from .views import Views, safe_stem

log = logging.getLogger("blendfarm.server")


def parse_chunk(text: str) -> tuple[int, int, int]:
    """'FRAME:ROW:COL' as numbers; BadInput otherwise."""
    m = re.fullmatch(r"\s*(-?\d{1,9}):(\d{1,4}):(\d{1,4})\s*", text)
    if not m:
        raise BadInput(f"a chunk is FRAME:ROW:COL (such as 12:0:1), not {text[:40]!r}")
    return int(m[1]), int(m[2]), int(m[3])


class Controls:
    """Priority, pause, resume, cancel and requeue of projects; nodes on and off."""

    def __init__(self, store: Store, data: DataDir, views: Views, guard: Guard, bell: WorkBell):
        self.bell = bell  # rung when work may be leasable again (nodes waiting hear at once)
        self.store = store
        self.data = data
        self.views = views
        self.guard = guard

    def _owner(self, pid: str, who: Credentials, action: str) -> None:
        self.guard.check_owner(self.store.projects.get(pid).owner_key_hash, who, action)

    def _check(self, pid: str, event: ProjectEvent, what: str) -> None:
        state = self.store.projects.get(pid).state
        if not can_move(state, event):
            raise Conflict(f"project {pid} is {state.value}: it cannot be {what}")

    def set_priority(self, pid: str, priority: int, who: Credentials) -> p.Project:
        self._owner(pid, who, "changing its priority")
        self.store.projects.set_priority(pid, priority)
        log.info("project %s has priority %d", pid, priority)
        self.bell.ring()
        return self.views.project(pid)

    def pause(self, pid: str, who: Credentials) -> p.Project:
        self._owner(pid, who, "pausing it")
        with self.store.db.transaction():
            self._check(pid, ProjectEvent.PAUSE, "paused")
            self.store.projects.pause(pid)
        log.info("project %s paused", pid)
        return self.views.project(pid)

    def resume(self, pid: str, who: Credentials) -> p.Project:
        self._owner(pid, who, "resuming it")
        with self.store.db.transaction():
            self._check(pid, ProjectEvent.RESUME, "resumed (it is not paused)")
            self.store.projects.resume(pid)
        log.info("project %s resumed", pid)
        self.bell.ring()
        return self.views.project(pid)

    def cancel(self, pid: str, who: Credentials) -> p.Project:
        self._owner(pid, who, "cancelling it")
        with self.store.db.transaction():
            self._check(pid, ProjectEvent.CANCEL, "cancelled")
            stopped = self.store.projects.cancel(pid)
        log.info("project %s cancelled (%d task(s) stopped on their nodes)", pid, len(stopped))
        return self.views.project(pid)

    def requeue(self, pid: str, ask: p.RequeueRequest, who: Credentials) -> p.Requeued:
        self._owner(pid, who, "requeueing its chunks")
        if bool(ask.frames.strip()) == bool(ask.chunks):
            raise BadInput("give either frames (12-15) or chunks (FRAME:ROW:COL) to render again")
        with self.store.db.transaction():
            self._check(pid, ProjectEvent.REWORK, "requeued (retry it first)")
            tasks = self.store.tasks.of_project(pid)
            have = {(t.frame, t.row, t.col) for t in tasks}
            if ask.frames.strip():
                start, end = parse_frames(ask.frames)
                if end < start:
                    raise BadInput(f"frames {ask.frames}: the range ends before it starts")
                wanted = [k for k in sorted(have) if start <= k[0] <= end]
                if not wanted:
                    raise BadInput(f"project {pid} has no chunks in frames {start}-{end}")
            else:
                wanted = [parse_chunk(c) for c in ask.chunks]
                missing = [w for w in wanted if w not in have]
                if missing:
                    f, r, c = missing[0]
                    raise BadInput(f"project {pid} has no chunk {f}:{r}:{c}")
            moved = self.store.tasks.requeue(pid, wanted)
        log.info("project %s: %d chunk(s) requeued", pid, moved)
        self.bell.ring()
        return p.Requeued(project=self.views.project(pid), chunks=moved)

    def raw_file(self, pid: str) -> tuple[Path, str, str]:
        """The raw zip of a finished project; of a cancelled one, what it kept: its done
        chunks under their raw names and its stitched frames as `frames/<frame>.<ext>`."""
        row = self.store.projects.get(pid)
        if row.state is not ProjectState.CANCELLED:
            return self.views.finished_file(pid, "raw")
        done = [t for t in self.store.tasks.of_project(pid) if t.state is TaskState.DONE]
        entries: list[tuple[str, Path | int]] = self.store.images.sources(self.data, pid, done)[0]
        for f in sorted(self.store.projects.stitched_frames(pid)):
            with suppress(NotFound):
                frame = self.data.find_frame(pid, f)
                entries.append((f"frames/{f}{frame.suffix}", frame))
        out = self.data.raw(pid)
        out.parent.mkdir(parents=True, exist_ok=True)
        kept = (
            (n, source) for n, source in entries if not isinstance(source, Path) or source.is_file()
        )
        write_raw_zip(self.store.images.read(kept), out)
        return out, "application/zip", f"{safe_stem(row.title) or pid}-{pid}-partial.zip"

    def set_node_disabled(self, name: str, disabled: bool) -> p.Node:
        """(The route checks the admin password.)"""
        self.store.nodes.set_disabled(name, disabled)
        log.info("node %s %s", name, "disabled" if disabled else "enabled")
        self.bell.ring()
        return self.views.node(name)
