"""Projects: what was submitted, what the probe found, and the project state machine.

A project's state changes only in `move`, which reads the stored state inside the
transaction and writes what `states.project_move` answers.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..errors import NotFound
from ..formats import output_format
from ..states import (
    ProjectEvent,
    ProjectState,
    TaskEvent,
    TaskKind,
    TaskState,
    progress_event,
    project_move,
    task_moves,
)
from .database import Database
from .rows import NewProject, ProjectCounts, ProjectRow, project_row
from .validate import Plan


class ProjectStore:
    """Project rows of the farm's database (and the frames stitched for them)."""

    def __init__(self, db: Database):
        self.db = db

    # -- reading ------------------------------------------------------------------------------

    def get(self, pid: str) -> ProjectRow:
        """The stored row of a project; NotFound when there is none."""
        with self.db.read() as db:
            row = db.execute("SELECT * FROM projects WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise NotFound(f"no project {pid!r}")
        return project_row(row)

    def all(self) -> list[ProjectRow]:
        """Every project, oldest first."""
        with self.db.read() as db:
            rows = db.execute("SELECT * FROM projects ORDER BY created, id").fetchall()
        return [project_row(r) for r in rows]

    def counts(self, pid: str | None = None) -> dict[str, ProjectCounts]:
        """Per project (or for `pid` only): chunks total/done/rendering, tasks rendering, frames
        stitched. Kept on the project rows by the database itself (migration step 5)."""
        where, args = ("WHERE id = ?", (pid,)) if pid else ("", ())
        with self.db.read() as db:
            rows = db.execute(f"{_COUNTS} {where}", args).fetchall()
        return {r[0]: _project_counts(r) for r in rows}

    def frame_unfinished(self, pid: str, frame: int) -> int:
        """How many chunks of the project's `frame` are not done yet."""
        with self.db.read() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM tasks WHERE project_id = ? AND frame = ? AND kind = ?"
                " AND state != ?",
                (pid, frame, TaskKind.CHUNK.value, TaskState.DONE.value),
            ).fetchone()
        return int(row[0])

    def blocklist(self, pid: str, limit: int) -> list[str]:
        """Nodes that failed `limit` tasks of the project (it is not offered to them)."""
        with self.db.read() as db:
            rows = db.execute(
                "SELECT node FROM node_failures WHERE project_id = ? AND failures >= ?"
                " ORDER BY node",
                (pid, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def stitched_frames(self, pid: str) -> set[int]:
        with self.db.read() as db:
            rows = db.execute("SELECT frame FROM frames WHERE project_id = ?", (pid,))
            return {r[0] for r in rows}

    def frame_progress(self, pid: str) -> list[tuple[int, int, int, int, float]]:
        """(frame, chunks, done, rendering, last started or finished) of every frame of the
        project that has chunks, in frame order (0 when none started)."""
        frames: dict[int, list[float]] = {}
        with self.db.read() as db:
            for frame, state, n, last in db.execute(
                "SELECT frame, state, COUNT(*), MAX(COALESCE(finished, started, 0)) FROM tasks"
                " WHERE project_id = ? AND kind = ? GROUP BY 1, 2",
                (pid, TaskKind.CHUNK.value),
            ):
                f = frames.setdefault(frame, [0, 0, 0, 0.0])
                f[0] += n
                f[1] += n if state == TaskState.DONE.value else 0
                f[2] += n if state == TaskState.RENDERING.value else 0
                f[3] = max(f[3], float(last or 0))
        return [(k, int(t), int(d), int(r), last) for k, (t, d, r, last) in sorted(frames.items())]

    # -- writing ------------------------------------------------------------------------------

    def create(self, new: NewProject) -> str:
        """Insert a project and its probe task; returns the new id."""
        now = self.db.clock()
        with self.db.transaction() as db:
            while True:
                pid = secrets.token_hex(4)
                if not db.execute("SELECT 1 FROM projects WHERE id = ?", (pid,)).fetchone():
                    break
            db.execute(
                "INSERT INTO projects (id, title, blend, sha256, archive_size, animation,"
                " frame_start, frame_end, tiles, overscan, state, size, created, updated,"
                " file_version, owner_key_hash, device, priority, require_tags, frame_order,"
                " notify, content_sha, finish)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    pid,
                    new.title,
                    new.blend,
                    new.sha256,
                    new.archive_size,
                    int(new.animation),
                    new.frame_start,
                    new.frame_end,
                    new.tiles,
                    new.overscan,
                    (ProjectState.PAUSED if new.paused else ProjectState.QUEUED).value,
                    new.archive_size,
                    now,
                    now,
                    new.file_version,
                    new.owner_key_hash,
                    new.device,
                    new.priority,
                    json.dumps(sorted(new.require_tags)),
                    new.frame_order.value,
                    new.notify,
                    new.content_sha,
                    new.finish,
                ),
            )
            db.execute(
                "INSERT INTO tasks (project_id, kind, state) VALUES (?, ?, ?)",
                (pid, TaskKind.PROBE.value, TaskState.QUEUED.value),
            )
        return pid

    def set_plan(self, pid: str, plan: Plan, probe: dict[str, Any]) -> None:
        """Store what the probe found: size, frames, rate, warnings, the output format and the
        probe itself."""
        output = output_format(probe.get("output")).to_dict()
        with self.db.transaction() as db:
            cur = db.execute(
                f"UPDATE projects SET {PLAN_COLUMNS}, probe = ?, output_format = ?, updated = ?"
                " WHERE id = ?",
                (*plan_values(plan), json.dumps(probe), json.dumps(output), self.db.clock(), pid),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no project {pid!r}")

    def add_size(self, pid: str, nbytes: int) -> None:
        """Count `nbytes` more stored for the project."""
        with self.db.transaction(changes=False) as db:
            db.execute("UPDATE projects SET size = size + ? WHERE id = ?", (nbytes, pid))

    def mark_frame(self, pid: str, frame: int) -> None:
        """A frame is stitched (and the project has a thumbnail)."""
        with self.db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO frames VALUES (?, ?)", (pid, frame))
            db.execute("UPDATE projects SET thumbnail = 1 WHERE id = ?", (pid,))

    def set_priority(self, pid: str, priority: int) -> None:
        """A new priority (0-100): higher gets free nodes first."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE projects SET priority = ?, updated = ? WHERE id = ?",
                (priority, self.db.clock(), pid),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no project {pid!r}")

    def mark_notified(self, pid: str, state: ProjectState) -> None:
        """The notifiers were told that the project reached `state`."""
        with self.db.transaction(changes=False) as db:
            db.execute("UPDATE projects SET notified = ? WHERE id = ?", (state.value, pid))

    def to_notify(self, states: frozenset[ProjectState]) -> list[ProjectRow]:
        """Projects in one of `states` whose notifiers were not told of it yet."""
        values = sorted(s.value for s in states)
        with self.db.read() as db:
            rows = db.execute(
                f"SELECT * FROM projects WHERE state IN ({', '.join('?' * len(values))})"
                " AND (notified IS NULL OR notified != state) ORDER BY updated",
                values,
            ).fetchall()
        return [project_row(r) for r in rows]

    def chunk_times(self, pid: str | None = None) -> list[tuple[str, int, float, float]]:
        """(project, frame, seconds, finished) of every done chunk with a measured time."""
        where, args = ("AND project_id = ?", (pid,)) if pid else ("", ())
        with self.db.read() as db:
            rows = db.execute(
                "SELECT project_id, frame, seconds, finished FROM tasks"
                f" WHERE kind = ? AND state = ? AND seconds IS NOT NULL {where}",
                (TaskKind.CHUNK.value, TaskState.DONE.value, *args),
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def delete(self, pid: str) -> ProjectRow:
        """Forget a project, its tasks, frames and failures; returns the row it had."""
        with self.db.transaction() as db:
            row = self.get(pid)
            db.execute("DELETE FROM projects WHERE id = ?", (pid,))
        return row

    # -- the state machine --------------------------------------------------------------------

    def move(
        self, pid: str, event: ProjectEvent, *, error: str | None = None, result: str | None = None
    ) -> ProjectState:
        """Apply `event` to the project's stored state; returns the new state.

        Entering `error` stores `error` (staying in error keeps the first message unless a new
        one is given); leaving it clears the message. `result` is stored when given.
        """
        with self.db.transaction(changes=False) as db:
            row = db.execute("SELECT state, error FROM projects WHERE id = ?", (pid,)).fetchone()
            if row is None:
                raise NotFound(f"no project {pid!r}")
            old, old_error = ProjectState(row[0]), row[1]
            new = project_move(old, event)
            message = (error or old_error) if new is ProjectState.ERROR else None
            if new is old and message == old_error and result is None:
                return new
            back_to_work = new is ProjectState.QUEUED  # its next end is told again
            db.execute(
                "UPDATE projects SET state = ?, error = ?, result = COALESCE(?, result),"
                " updated = ?, notified = CASE WHEN ? THEN NULL ELSE notified END WHERE id = ?",
                (new.value, message, result, self.db.clock(), back_to_work, pid),
            )
            self.db.changed()
        return new

    def sync_state(self, pid: str) -> ProjectState:
        """Move a project the way its task counts say (started, rendered, or requeued)."""
        with self.db.transaction(changes=False) as db:
            row = db.execute(f"{_COUNTS} WHERE id = ?", (pid,)).fetchone()
            c = ProjectCounts() if row is None else _project_counts(row)
            # A frame's finish task is work like its chunks: not rendered until it is done.
            total, done = c.total + c.finishes, c.done + c.finishes_done
            return self.move(pid, progress_event(total, done, c.busy))

    def set_error(self, pid: str, message: str) -> None:
        """The project cannot go on (a task gave up, the probe or compositing failed)."""
        self.move(pid, ProjectEvent.FAILED, error=message)

    def set_result(self, pid: str, filename: str) -> None:
        """Compositing wrote the result: the project is done."""
        self.move(pid, ProjectEvent.FINISHED, result=filename)

    def pause(self, pid: str) -> ProjectState:
        """Hand out no more of its chunks; those rendering finish and count."""
        return self.move(pid, ProjectEvent.PAUSE)

    def resume(self, pid: str) -> ProjectState:
        """A paused project goes on where it was."""
        with self.db.transaction(changes=False):
            self.move(pid, ProjectEvent.RESUME)
            return self.sync_state(pid)

    def cancel(self, pid: str) -> list[int]:
        """Stop a project: its rendering tasks go back to the queue (their nodes are told to
        stop at their next heartbeat), done chunks and stitched frames are kept. Returns the
        ids of the tasks that were rendering."""
        with self.db.transaction() as db:
            self.move(pid, ProjectEvent.CANCEL)
            moves = task_moves(TaskEvent.CANCEL)
            rows = db.execute(
                "SELECT id, state FROM tasks WHERE project_id = ? AND state = ?",
                (pid, TaskState.RENDERING.value),
            ).fetchall()
            db.executemany(
                "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL"
                " WHERE id = ?",
                [(moves[TaskState(state)].value, tid) for tid, state in rows],
            )
            return [r[0] for r in rows]

    def retry(self, pid: str) -> ProjectState:
        """Put a project in error (or cancelled) back to work: failures forgotten, unfinished
        tasks queued, done ones kept. IllegalTransition when it cannot retry (check first)."""
        with self.db.transaction() as db:
            self.move(pid, ProjectEvent.RETRY)
            moves = task_moves(TaskEvent.RETRY)
            tasks = db.execute(
                "SELECT id, state FROM tasks WHERE project_id = ?", (pid,)
            ).fetchall()
            db.executemany(
                "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
                " failed_on = '[]' WHERE id = ?",
                [
                    (moves[TaskState(state)].value, tid)
                    for tid, state in tasks
                    if TaskState(state) in moves
                ],
            )
            db.execute("DELETE FROM node_failures WHERE project_id = ?", (pid,))
            return self.sync_state(pid)


_COUNTS = (
    "SELECT id, chunks_total, chunks_done, chunks_rendering, tasks_busy, frames_done,"
    " finishes_total, finishes_done FROM projects"
)


def _project_counts(row: tuple[str, int, int, int, int, int, int, int]) -> ProjectCounts:
    _pid, total, done, rendering, busy, frames, finishes, finishes_done = row
    return ProjectCounts(
        total=total,
        done=done,
        rendering=rendering,
        busy=busy,
        frames=frames,
        finishes=finishes,
        finishes_done=finishes_done,
    )


# The columns a plan sets on its project, and their values (`plan_values`), in that order.
PLAN_COLUMNS = (
    "width = ?, height = ?, fps = ?, fps_base = ?, frame_start = ?, frame_end = ?,"
    " animation = ?, warnings = ?"
)


def plan_values(plan: Plan) -> tuple[object, ...]:
    """The values of PLAN_COLUMNS for `plan`."""
    return (
        plan.width,
        plan.height,
        plan.fps,
        plan.fps_base,
        plan.frames[0],
        plan.frames[-1],
        int(plan.animation),
        json.dumps(plan.warnings),
    )
