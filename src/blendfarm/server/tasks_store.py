"""Tasks (probes and chunks): leasing, results, failures, and the task state machine.

Every method that changes a task's state reads the stored state inside its transaction, asks
`states.task_move` for the next one and writes it; the task's project moves along in the same
transaction: it starts when a task is leased, follows its task counts when a task is done or
its lease runs out (`ProjectStore.sync_state`), and fails when a task gives up. A task failed
or handed back leaves its project as it was (a project that started stays `rendering`).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Collection
from datetime import datetime
from typing import Any

from ..blendversion import can_open
from ..errors import NotFound
from ..rest_hours import node_rests
from ..scheduler import (
    Candidate,
    FrameOrder,
    ProjectLoad,
    first_task,
    frame_ranks,
    project_order,
    task_gives_up,
)
from ..states import (
    LEASABLE,
    IllegalTransition,
    ProjectEvent,
    TaskEvent,
    TaskKind,
    TaskState,
    task_move,
)
from .database import Database
from .projects_store import ProjectStore
from .rows import TaskRow, task_row
from .validate import Plan

CHUNK_BATCH = 4096  # chunk rows made in one transaction when a probe's plan comes in


class TaskStore:
    """Task rows of the farm's database; moves their projects along with them."""

    def __init__(self, db: Database, projects: ProjectStore):
        self.db = db
        self.projects = projects

    # -- reading ------------------------------------------------------------------------------

    def get(self, task_id: int) -> TaskRow:
        """One task; NotFound when there is none."""
        with self.db.read() as db:
            return self._get(db, task_id)

    def of_project(
        self, pid: str, kind: TaskKind = TaskKind.CHUNK, frames: Collection[int] | None = None
    ) -> list[TaskRow]:
        """A project's tasks of one kind (of `frames` only), in frame, row, column order."""
        only = "" if frames is None else f" AND frame IN ({', '.join('?' * len(frames))})"
        with self.db.read() as db:
            rows = db.execute(
                f"SELECT * FROM tasks WHERE project_id = ? AND kind = ?{only}"
                " ORDER BY frame, row, col",
                (pid, kind.value, *(frames or ())),
            ).fetchall()
        return [task_row(r) for r in rows]

    @staticmethod
    def _get(db: sqlite3.Connection, task_id: int) -> TaskRow:
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"no task {task_id}")
        return task_row(row)

    # -- leases -------------------------------------------------------------------------------

    def lease(
        self, node: str, lease_seconds: float, max_failures: int, slot: str = "cpu"
    ) -> TaskRow | None:
        """Hand `node` its next task under a lease, or None when there is nothing for it.

        `slot` is the kind of the node's slot asking ("gpu" or "cpu"): a project that
        requires the other kind is not for it."""
        with self.db.transaction(changes=False) as db:
            pick = self._pick(db, node, max_failures, slot)
            if pick is None:
                return None
            state = task_move(TaskState.QUEUED, TaskEvent.LEASE)  # picked among queued tasks
            now = self.db.clock()
            lease = secrets.token_hex(12)
            db.execute(
                "UPDATE tasks SET state = ?, node = ?, lease = ?, lease_expires = ?, started = ?,"
                " leases = json_insert(leases, '$[#]', ?) WHERE id = ?",
                (state.value, node, lease, now + lease_seconds, now, lease, pick.task_id),
            )
            self.db.changed()
            self.projects.move(pick.project_id, ProjectEvent.START)
            return self._get(db, pick.task_id)

    def _pick(
        self, db: sqlite3.Connection, node: str, max_failures: int, slot: str = "cpu"
    ) -> Candidate | None:
        """The task the scheduler gives `node`: fair between projects it can open, whose
        device its `slot` is, and it is not barred from; never a task it failed."""
        barred = {"gpu": "cpu", "cpu": "gpu"}.get(slot, "gpu")
        row = db.execute(
            "SELECT blender_version, info, disabled FROM nodes WHERE name = ?", (node,)
        ).fetchone()
        if row is not None and row["disabled"]:
            return None
        info = json.loads(row["info"]) if row else {}
        if node_rests(str(info.get("schedule") or ""), datetime.fromtimestamp(self.db.clock())):
            return None  # inside its sleep hours (the chunk it renders still finishes)
        node_version = row[0] if row else None
        node_tags = frozenset(info.get("tags") or ())
        leasable = sorted(s.value for s in LEASABLE)
        projects = [
            p
            for p in db.execute(
                "SELECT id, created, file_version, priority, require_tags FROM projects"
                f" WHERE state IN ({', '.join('?' * len(leasable))}) AND device != ?",
                [*leasable, barred],
            ).fetchall()
            if can_open(node_version, p["file_version"])
        ]
        if not projects:
            return None
        busy = dict(
            db.execute(
                "SELECT project_id, COUNT(*) FROM tasks WHERE state = ? GROUP BY 1",
                (TaskState.RENDERING.value,),
            ).fetchall()
        )
        blocked: dict[str, set[str]] = {}
        for pid, name in db.execute(
            "SELECT project_id, node FROM node_failures WHERE failures >= ?", (max_failures,)
        ):
            blocked.setdefault(pid, set()).add(name)
        loads = [
            ProjectLoad(
                p["id"],
                p["created"],
                busy.get(p["id"], 0),
                frozenset(blocked.get(p["id"], ())),
                p["priority"],
                frozenset(json.loads(p["require_tags"])),
            )
            for p in projects
        ]
        for pid in project_order(node, loads, node_tags):
            rows = db.execute(
                "SELECT id, project_id, frame, row, col, failed_on FROM tasks"
                " WHERE project_id = ? AND state = ? ORDER BY rank, frame, row, col, id LIMIT ?",
                # A node fails at most max_failures - 1 tasks of a project it may still do.
                (pid, TaskState.QUEUED.value, max_failures + 1),
            ).fetchall()
            pick = first_task(
                node,
                (
                    Candidate(r[0], r[1], r[2], r[3], r[4], frozenset(json.loads(r[5])))
                    for r in rows
                ),
            )
            if pick is not None:
                return pick
        return None

    def renew(self, node: str, task_ids: list[int], lease_seconds: float) -> list[int]:
        """Extend the leases `node` holds; returns the ids it no longer holds (to stop)."""
        lost = []
        with self.db.transaction(changes=False) as db:
            for tid in task_ids:
                cur = db.execute(
                    "UPDATE tasks SET lease_expires = ? WHERE id = ? AND node = ? AND state = ?",
                    (self.db.clock() + lease_seconds, tid, node, TaskState.RENDERING.value),
                )
                if cur.rowcount == 0:
                    lost.append(tid)
        return lost

    def extend_leases(self, lease_seconds: float) -> int:
        """Give every lease still running at least `lease_seconds` from now; returns how many
        were extended. A server that starts does this first: no node could renew a lease
        while it was down, so the time it was away must not count against them."""
        until = self.db.clock() + lease_seconds
        with self.db.transaction(changes=False) as db:
            cur = db.execute(
                "UPDATE tasks SET lease_expires = ? WHERE state = ? AND lease_expires < ?",
                (until, TaskState.RENDERING.value, until),
            )
        return cur.rowcount

    def expire_leases(self) -> list[int]:
        """Requeue every task whose lease ran out; returns their ids."""
        with self.db.transaction(changes=False) as db:
            rows = [
                task_row(r)
                for r in db.execute(
                    "SELECT * FROM tasks WHERE state = ? AND lease_expires < ?",
                    (TaskState.RENDERING.value, self.db.clock()),
                ).fetchall()
            ]
            for task in rows:
                self._requeue(db, task.id, task_move(task.state, TaskEvent.EXPIRE))
            for pid in sorted({t.project_id for t in rows}):
                self.projects.sync_state(pid)
            if rows:
                self.db.changed()
        return [t.id for t in rows]

    # -- what nodes report --------------------------------------------------------------------

    def complete(self, task_id: int) -> bool:
        """Mark a task done; False when it already was (completion is idempotent). A result
        after the lease ran out is taken while the task is unfinished."""
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            state = task_move(task.state, TaskEvent.COMPLETE)
            if task.state is TaskState.DONE:
                return False
            self._finish(db, task, state)
            return True

    def finish_probe(self, task_id: int, plan: Plan, probe: dict[str, Any]) -> bool:
        """A probe's result: the project's plan is stored, its chunks are made and the probe
        is done; False (nothing more changed) when the probe already was done.

        Chunks are made in transactions of whole frames, at most CHUNK_BATCH rows each, with
        the store free for others in between: a project of a quarter million chunks never
        holds the farm still. The probe stays open until the last batch, so the project is
        not "rendered" while chunks are still being made; nodes may start on the first ones.
        """
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            if task.state is TaskState.DONE:
                return False
            task_move(task.state, TaskEvent.COMPLETE)  # a probe that may complete at all
            pid = task.project_id
            self.projects.set_plan(pid, plan, probe)
            tiles, order = db.execute(
                "SELECT tiles, frame_order FROM projects WHERE id = ?", (pid,)
            ).fetchone()
        ranks = frame_ranks(plan.frames, FrameOrder(order))
        per_batch = max(1, CHUNK_BATCH // (tiles * tiles))
        for i in range(0, len(plan.frames), per_batch):
            frames = plan.frames[i : i + per_batch]
            with self.db.transaction() as db:
                if self._get(db, task_id).state is TaskState.DONE:
                    return False  # another result for the same probe was first
                made = {
                    r[0]
                    for r in db.execute(
                        "SELECT DISTINCT frame FROM tasks WHERE project_id = ? AND kind = ?"
                        " AND frame BETWEEN ? AND ?",
                        (pid, TaskKind.CHUNK.value, frames[0], frames[-1]),
                    )
                }
                db.executemany(
                    "INSERT INTO tasks (project_id, kind, frame, row, col, state, rank)"
                    " VALUES (?,?,?,?,?,?,?)",
                    [
                        (pid, TaskKind.CHUNK.value, f, r, c, TaskState.QUEUED.value, ranks[f])
                        for f in frames
                        if f not in made
                        for r in range(tiles)
                        for c in range(tiles)
                    ],
                )
            time.sleep(0)  # let requests waiting for the store in before the next batch
        return self.complete(task_id)

    def lose(self, pid: str, chunks: list[tuple[int, int, int]]) -> int:
        """Done chunks (frame, row, col) of `pid` whose files are gone or damaged go back to
        the queue, their frames to be stitched again; returns how many moved."""
        moved = 0
        with self.db.transaction() as db:
            for frame, row, col in chunks:
                found = db.execute(
                    "SELECT * FROM tasks WHERE project_id = ? AND kind = ? AND frame = ?"
                    " AND row = ? AND col = ?",
                    (pid, TaskKind.CHUNK.value, frame, row, col),
                ).fetchone()
                if found is None or found["state"] != TaskState.DONE.value:
                    continue
                state = task_move(TaskState.DONE, TaskEvent.LOST)
                db.execute(
                    "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
                    " finished = NULL WHERE id = ?",
                    (state.value, found["id"]),
                )
                db.execute("DELETE FROM frames WHERE project_id = ? AND frame = ?", (pid, frame))
                moved += 1
            if moved:
                self.projects.sync_state(pid)
        return moved

    def requeue(self, pid: str, chunks: list[tuple[int, int, int]]) -> int:
        """Render these chunks (frame, row, col) of `pid` again: done ones go back to the
        queue, their frames (and the project's result) are made again; the rest of the project
        is untouched. Returns how many chunks moved. IllegalTransition when the project cannot
        be reworked (check first)."""
        wanted = set(chunks)
        moved = 0
        with self.db.transaction() as db:
            self.projects.move(pid, ProjectEvent.REWORK)
            frames: set[int] = set()
            for t in self.of_project(pid):
                if (t.frame, t.row, t.col) not in wanted or t.state is TaskState.RENDERING:
                    continue
                state = task_move(t.state, TaskEvent.REQUEUE)
                db.execute(
                    "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
                    " finished = NULL, seconds = NULL, failed_on = '[]' WHERE id = ?",
                    (state.value, t.id),
                )
                frames.add(t.frame)
                moved += 1
            db.executemany(
                "DELETE FROM frames WHERE project_id = ? AND frame = ?",
                [(pid, f) for f in sorted(frames)],
            )
            self.projects.sync_state(pid)
        return moved

    def reject_probe(self, task_id: int, message: str) -> bool:
        """A probe's result was refused: the probe goes back to the queue (a retry probes
        again, the file may be fixed) and the project is in error with `message`. False
        (nothing changed) when the probe already was done."""
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            if task.state is TaskState.DONE:
                return False
            self._requeue(db, task_id, task_move(task.state, TaskEvent.REJECT))
            self.projects.set_error(task.project_id, message)
            self.db.changed()
            return True

    def release(self, task_id: int, lease: str) -> bool:
        """A node hands back the task it renders under `lease`; False when it does not hold
        it any more (the lease ran out, the task went to another node or is done)."""
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            if task.state is not TaskState.RENDERING or task.lease != lease:
                return False
            self._requeue(db, task_id, task_move(task.state, TaskEvent.RELEASE))
            self.db.changed()
            return True

    def release_all(self, node: str) -> list[int]:
        """Hand back every task `node` still renders (it said goodbye); their ids."""
        with self.db.read() as db:
            held = db.execute(
                "SELECT id, lease FROM tasks WHERE node = ? AND state = ?",
                (node, TaskState.RENDERING.value),
            ).fetchall()
        return [tid for tid, lease in held if self.release(tid, lease)]

    def fail(
        self, task_id: int, lease: str, node: str, message: str, max_failures: int
    ) -> str | None:
        """Record that the task failed on `node` (it goes back to the queue, never to that node
        again). Returns the project's error message when the project must give up. Nothing
        happens when `lease` is not the task's current lease."""
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            if task.state is not TaskState.RENDERING or task.lease != lease:
                return None
            failed = set(task.failed_on) | {node}
            self._requeue(db, task_id, task_move(task.state, TaskEvent.FAIL))
            db.execute(
                "UPDATE tasks SET failed_on = ?, last_error = ? WHERE id = ?",
                (json.dumps(sorted(failed)), message, task_id),
            )
            pid = task.project_id
            db.execute(
                "INSERT INTO node_failures VALUES (?, ?, 1) ON CONFLICT (project_id, node)"
                " DO UPDATE SET failures = failures + 1",
                (pid, node),
            )
            self.db.changed()
            online = frozenset(
                r[0] for r in db.execute("SELECT name FROM nodes WHERE offline = 0").fetchall()
            )
            blocked = frozenset(self.projects.blocklist(pid, max_failures))
            if task_gives_up(frozenset(failed), online, max_failures) or (
                bool(online) and not online - blocked
            ):
                self.projects.set_error(pid, message)
                return message
        return None

    # -- writing a task's new state -----------------------------------------------------------

    def _requeue(self, db: sqlite3.Connection, task_id: int, state: TaskState) -> None:
        """Write a move back to the queue: no node, no lease."""
        if state is not TaskState.QUEUED:
            raise IllegalTransition(f"task {task_id} cannot be requeued into {state.value}")
        db.execute(
            "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL"
            " WHERE id = ?",
            (state.value, task_id),
        )

    def _finish(self, db: sqlite3.Connection, task: TaskRow, state: TaskState) -> None:
        """Write a move to done (its node is credited with the chunk) and move the project."""
        if state is not TaskState.DONE:
            raise IllegalTransition(f"task {task.id} cannot be finished into {state.value}")
        now = self.db.clock()
        seconds = None if task.started is None else max(0.0, now - task.started)
        db.execute(
            "UPDATE tasks SET state = ?, lease = NULL, lease_expires = NULL, finished = ?,"
            " seconds = ? WHERE id = ?",
            (state.value, now, seconds, task.id),
        )
        if task.node and task.kind is TaskKind.CHUNK:
            db.execute(
                "UPDATE nodes SET chunks_done = chunks_done + 1 WHERE name = ?", (task.node,)
            )
        self.db.changed()
        self.projects.sync_state(task.project_id)
