"""A project's plan and its chunk tasks: made at submit from the scene the server read in the
.blend, or when the probe's result comes in; dropped again when the probe replans.

Chunks are made in transactions of whole frames, at most CHUNK_BATCH rows each, with the
store free for others in between: a project of a quarter million chunks never holds the farm
still. While they are made the project's probe stays open (rendering) — on the node that
probed, or held by the server itself at submit — so a project whose first chunks are all
done before the last ones exist is never taken for rendered. A server held probe goes back
to the queue when the chunks are made; should the server stop meanwhile, its hold runs out
like any lease and the probe's result makes whatever chunks are missing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import NotFound
from ..scheduler import FrameOrder, frame_ranks
from ..states import TaskEvent, TaskKind, TaskState, task_move
from .database import Database
from .projects_store import PLAN_COLUMNS, ProjectStore, plan_values
from .rows import NewProject, ProjectRow
from .validate import Plan

CHUNK_BATCH = 4096  # chunk rows made in one transaction
PROBE_RANK = -1  # a project's probe goes before its chunks (whose ranks start at 0)


def make_chunks(
    db: Database, probe_id: int, pid: str, frames: list[int], hold: float | None = None
) -> bool:
    """Make the chunk tasks of `frames` that `pid` does not have yet, a batch at a time.

    False (nothing more made) once the project's probe `probe_id` is done: another result
    for it was first. NotFound when the project is deleted meanwhile. With `hold` (seconds)
    the server's own hold on the probe is renewed with every batch."""
    with db.read() as conn:
        found = conn.execute(
            "SELECT tiles, frame_order FROM projects WHERE id = ?", (pid,)
        ).fetchone()
    if found is None:
        raise NotFound(f"no project {pid!r}")
    tiles, order = int(found[0]), FrameOrder(found[1])
    ranks = frame_ranks(frames, order)
    per_batch = max(1, CHUNK_BATCH // (tiles * tiles))
    for i in range(0, len(frames), per_batch):
        batch = frames[i : i + per_batch]
        with db.transaction() as conn:
            probe = conn.execute("SELECT state FROM tasks WHERE id = ?", (probe_id,)).fetchone()
            if probe is None:
                raise NotFound(f"no task {probe_id}")
            if probe[0] == TaskState.DONE.value:
                return False
            if hold is not None:
                conn.execute(
                    "UPDATE tasks SET lease_expires = ? WHERE id = ? AND state = ?"
                    " AND node IS NULL",
                    (db.clock() + hold, probe_id, TaskState.RENDERING.value),
                )
            made = {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT frame FROM tasks WHERE project_id = ? AND kind = ?"
                    " AND frame BETWEEN ? AND ?",
                    (pid, TaskKind.CHUNK.value, batch[0], batch[-1]),
                )
            }
            conn.executemany(
                "INSERT INTO tasks (project_id, kind, frame, row, col, state, rank)"
                " VALUES (?,?,?,?,?,?,?)",
                [
                    (pid, TaskKind.CHUNK.value, f, r, c, TaskState.QUEUED.value, ranks[f])
                    for f in batch
                    if f not in made
                    for r in range(tiles)
                    for c in range(tiles)
                ],
            )
        time.sleep(0)  # let requests waiting for the store in before the next batch
    return True


class Planner:
    """Projects whose plan is known at submit (the server read their scene)."""

    def __init__(self, db: Database, projects: ProjectStore):
        self.db = db
        self.projects = projects

    def create(
        self, new: NewProject, plan: Plan, scene: dict[str, Any], hold: float
    ) -> tuple[str, int]:
        """Insert the project with its plan and what was read of its scene, its probe held
        by the server (for up to `hold` seconds) until `fill` has made its chunks; returns
        the project's id and its probe's."""
        with self.db.transaction() as db:
            pid = self.projects.create(new)
            db.execute(
                f"UPDATE projects SET {PLAN_COLUMNS}, scene = ?, scene_frames = ? WHERE id = ?",
                (*plan_values(plan), json.dumps(scene), int(new.frame_start is None), pid),
            )
            state = task_move(TaskState.QUEUED, TaskEvent.LEASE)
            (probe_id,) = db.execute(
                "UPDATE tasks SET state = ?, rank = ?, lease_expires = ?"
                " WHERE project_id = ? AND kind = ? RETURNING id",
                (state.value, PROBE_RANK, self.db.clock() + hold, pid, TaskKind.PROBE.value),
            ).fetchone()
        return pid, int(probe_id)

    def fill(self, pid: str, probe_id: int, frames: list[int], hold: float) -> None:
        """Make the project's chunks, then hand its probe to the queue: the first node to
        take it reports the scene's warnings (or a plan of its own) without holding the
        others back."""
        make_chunks(self.db, probe_id, pid, frames, hold)
        with self.db.transaction(changes=False) as db:
            state = task_move(TaskState.RENDERING, TaskEvent.RELEASE)
            cur = db.execute(
                "UPDATE tasks SET state = ?, lease_expires = NULL WHERE id = ? AND state = ?"
                " AND node IS NULL",
                (state.value, probe_id, TaskState.RENDERING.value),
            )
            if cur.rowcount:
                self.db.changed()

    def drop_unrendered(self, pid: str, probe_id: int) -> bool:
        """Forget the project's chunks, for its probe `probe_id` to make them again, when
        none is done yet (those rendering are lost to their nodes, who stop at their next
        heartbeat); False, changing nothing, when one is or the probe is already done."""
        with self.db.transaction() as db:
            probe = db.execute("SELECT state FROM tasks WHERE id = ?", (probe_id,)).fetchone()
            if probe is None or probe[0] == TaskState.DONE.value:
                return False
            done = db.execute(
                "SELECT 1 FROM tasks WHERE project_id = ? AND kind = ? AND state = ? LIMIT 1",
                (pid, TaskKind.CHUNK.value, TaskState.DONE.value),
            ).fetchone()
            if done is not None:
                return False
            db.execute(
                "DELETE FROM tasks WHERE project_id = ? AND kind = ?",
                (pid, TaskKind.CHUNK.value),
            )
            return True


def stored_plan(row: ProjectRow) -> Plan | None:
    """The plan a project was given (None before it has one), without its warnings."""
    w, h, fps, base = row.width, row.height, row.fps, row.fps_base
    first, last = row.frame_start, row.frame_end
    if w is None or h is None or fps is None or base is None or first is None or last is None:
        return None
    return Plan(w, h, list(range(first, last + 1)), row.animation, fps, base, [])
