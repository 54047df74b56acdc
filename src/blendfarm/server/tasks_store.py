"""Tasks (probes and chunks): leasing, results, failures, and the task state machine.

A straggling chunk may render twice: its copy is a second lease on the same row (`copy_*`);
either result completes it, the other node is told to stop at once (`stops`), and one of
the two leases ending leaves the task rendering under the other (`TaskEvent.COPY_ENDS`).
What a lease hands out is read in `leasing`.

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
from collections.abc import Collection
from typing import Any

from ..errors import NotFound
from ..scheduler import task_gives_up
from ..states import (
    IllegalTransition,
    ProjectEvent,
    TaskEvent,
    TaskKind,
    TaskState,
    task_move,
)
from .chunk_tasks import make_chunks
from .copies import NO_COPY, end_one, holds, make_copy, other_holders
from .database import Database
from .finish_store import drop_finishes
from .leasing import first_queued, project_order_for
from .projects_store import ProjectStore
from .rows import TaskRow, task_row
from .stops import StopBoard
from .validate import Plan


class TaskStore:
    """Task rows of the farm's database; moves their projects along with them."""

    def __init__(self, db: Database, projects: ProjectStore, stops: StopBoard | None = None):
        self.db = db
        self.projects = projects
        self.stops = stops or StopBoard()  # nodes told at once to stop a task they lost

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

    def frames_of(self, pid: str) -> list[int]:
        """The frames a project renders (those it has chunk tasks of), in order."""
        with self.db.read() as db:
            rows = db.execute(
                "SELECT DISTINCT frame FROM tasks WHERE project_id = ? AND kind = ? ORDER BY 1",
                (pid, TaskKind.CHUNK.value),
            ).fetchall()
        return [int(r[0]) for r in rows]

    @staticmethod
    def _get(db: sqlite3.Connection, task_id: int) -> TaskRow:
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"no task {task_id}")
        return task_row(row)

    # -- leases -------------------------------------------------------------------------------

    def lease(
        self,
        node: str,
        lease_seconds: float,
        max_failures: int,
        slot: str = "cpu",
        warm: str = "",
        copies: bool = True,
    ) -> TaskRow | None:
        """Hand `node` its next task under a lease, or None when there is nothing for it.

        `slot` is the kind of the node's slot asking ("gpu" or "cpu"): a project that
        requires the other kind is not for it. `warm` is the content its Blender has loaded:
        such a project is preferred where fair share allows (`scheduler.project_order`).
        When the queue has nothing for it, it may get a copy of a straggling chunk
        (`scheduler.straggler`; never when `copies` is off), returned as its node sees it:
        `node` and `lease` are the copy's."""
        with self.db.transaction(changes=False) as db:
            now = self.db.clock()
            order = project_order_for(db, now, node, max_failures, slot, warm)
            pick = first_queued(db, node, order, max_failures)
            if pick is None:
                if not copies:
                    return None
                copy = make_copy(db, now, node, order, lease_seconds)
                if copy is not None:
                    self.db.changed()
                return copy
            state = task_move(TaskState.QUEUED, TaskEvent.LEASE)  # picked among queued tasks
            lease = secrets.token_hex(12)
            db.execute(
                "UPDATE tasks SET state = ?, node = ?, lease = ?, lease_expires = ?, started = ?,"
                " leases = json_insert(leases, '$[#]', ?), copy_node = NULL, copy_lease = NULL,"
                " copy_expires = NULL, copy_started = NULL, copies = 0 WHERE id = ?",
                (state.value, node, lease, now + lease_seconds, now, lease, pick.task_id),
            )
            self.db.changed()
            self.projects.move(pick.project_id, ProjectEvent.START)
            return self._get(db, pick.task_id)

    def renew(self, node: str, task_ids: list[int], lease_seconds: float) -> list[int]:
        """Extend the leases `node` holds (a task's or its copy's); returns the ids it no
        longer holds (to stop)."""
        lost = []
        with self.db.transaction(changes=False) as db:
            until = self.db.clock() + lease_seconds
            for tid in task_ids:
                held = TaskState.RENDERING.value
                cur = db.execute(
                    "UPDATE tasks SET lease_expires = ? WHERE id = ? AND node = ? AND state = ?",
                    (until, tid, node, held),
                )
                if cur.rowcount == 0:
                    cur = db.execute(
                        "UPDATE tasks SET copy_expires = ? WHERE id = ? AND copy_node = ?"
                        " AND state = ?",
                        (until, tid, node, held),
                    )
                if cur.rowcount == 0:
                    lost.append(tid)
        return lost

    def extend_leases(self, lease_seconds: float) -> int:
        """Give every lease still running at least `lease_seconds` from now; returns how many
        tasks had one extended. A server that starts does this first: no node could renew a
        lease while it was down, so the time it was away must not count against them."""
        until = self.db.clock() + lease_seconds
        with self.db.transaction(changes=False) as db:
            cur = db.execute(
                "UPDATE tasks SET lease_expires = MAX(lease_expires, ?),"
                " copy_expires = CASE WHEN copy_lease IS NULL THEN NULL"
                " ELSE MAX(copy_expires, ?) END"
                " WHERE state = ? AND (lease_expires < ? OR copy_expires < ?)",
                (until, until, TaskState.RENDERING.value, until, until),
            )
        return cur.rowcount

    def expire_leases(self) -> list[int]:
        """Requeue every task whose lease ran out; returns their ids. A task rendering under
        two leases (a straggler's copy) loses the one that ran out and renders on under the
        other: it goes back to the queue only when both are gone."""
        with self.db.transaction(changes=False) as db:
            now = self.db.clock()
            rows = [
                task_row(r)
                for r in db.execute(
                    "SELECT * FROM tasks WHERE state = ?"
                    " AND (lease_expires < ? OR copy_expires < ?)",
                    (TaskState.RENDERING.value, now, now),
                ).fetchall()
            ]
            requeued = []
            for task in rows:
                primary_gone = task.lease_expires is None or task.lease_expires < now
                copy_gone = task.copy_expires is None or task.copy_expires < now
                if primary_gone and copy_gone:
                    self._requeue(db, task.id, task_move(task.state, TaskEvent.EXPIRE))
                    requeued.append(task)
                else:
                    end_one(db, task, task.lease if primary_gone else task.copy_lease)
            for pid in sorted({t.project_id for t in requeued}):
                self.projects.sync_state(pid)
            if rows:
                self.db.changed()
        return [t.id for t in requeued]

    # -- what nodes report --------------------------------------------------------------------

    def complete(self, task_id: int, lease: str | None = None) -> bool:
        """Mark a task done, by the result sent under `lease` (None: its current one); False
        when it already was (completion is idempotent). A result after the lease ran out is
        taken while the task is unfinished. A node still rendering it under another lease
        (the other copy of a duplicated chunk) is told to stop at once (`stops`)."""
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            state = task_move(task.state, TaskEvent.COMPLETE)
            if task.state is TaskState.DONE:
                return False
            won = task.lease if lease is None else lease
            losers = other_holders(task, won)
            self._finish(
                db, task, state, copy_won=task.copy_lease is not None and won == task.copy_lease
            )
        for node in losers:
            self.stops.post(node, task_id)
        return True

    def finish_probe(self, task_id: int, plan: Plan, probe: dict[str, Any]) -> bool:
        """A probe's result: the project's plan is stored, the chunks it lacks are made
        (chunk_tasks.make_chunks: in batches, the probe open until the last) and the probe
        is done; False (nothing more changed) when the probe already was done."""
        with self.db.transaction(changes=False) as db:
            task = self._get(db, task_id)
            if task.state is TaskState.DONE:
                return False
            task_move(task.state, TaskEvent.COMPLETE)  # a probe that may complete at all
            pid = task.project_id
            self.projects.set_plan(pid, plan, probe)
        if not make_chunks(self.db, task_id, pid, plan.frames):
            return False  # another result for the same probe was first
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
                drop_finishes(db, pid, [frame])
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
            drop_finishes(db, pid, sorted(frames))
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
            if not holds(task, lease):
                return False
            if not end_one(db, task, lease):  # the other copy, if any, renders on
                self._requeue(db, task_id, task_move(task.state, TaskEvent.RELEASE))
            self.db.changed()
            return True

    def release_all(self, node: str) -> list[int]:
        """Hand back every task `node` still renders (it said goodbye); their ids."""
        with self.db.read() as db:
            held = db.execute(
                "SELECT id, lease FROM tasks WHERE node = ? AND state = ? UNION ALL"
                " SELECT id, copy_lease FROM tasks WHERE copy_node = ? AND state = ?",
                (node, TaskState.RENDERING.value) * 2,
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
            if not holds(task, lease):
                return None
            failed = set(task.failed_on) | {node}
            if not end_one(db, task, lease):  # the other copy, if any, renders on
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
            "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
            f" {NO_COPY} WHERE id = ?",
            (state.value, task_id),
        )

    def _finish(
        self, db: sqlite3.Connection, task: TaskRow, state: TaskState, copy_won: bool = False
    ) -> None:
        """Write a move to done (the node whose result it is, the task's own or its copy's
        when `copy_won`, is credited with the chunk) and move the project."""
        if state is not TaskState.DONE:
            raise IllegalTransition(f"task {task.id} cannot be finished into {state.value}")
        now = self.db.clock()
        node, started = (
            (task.copy_node, task.copy_started) if copy_won else (task.node, task.started)
        )
        seconds = None if started is None else max(0.0, now - started)
        db.execute(
            "UPDATE tasks SET state = ?, node = ?, lease = NULL, lease_expires = NULL,"
            f" finished = ?, seconds = ?, {NO_COPY} WHERE id = ?",
            (state.value, node, now, seconds, task.id),
        )
        if node and task.kind is TaskKind.CHUNK:
            db.execute("UPDATE nodes SET chunks_done = chunks_done + 1 WHERE name = ?", (node,))
        self.db.changed()
        self.projects.sync_state(task.project_id)
