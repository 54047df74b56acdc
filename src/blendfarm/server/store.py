"""All farm state in one SQLite file: projects, tasks (probes and chunks), nodes.

A restart on the same file finds every project and finished chunk.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..blendversion import can_open
from ..errors import NotFound
from ..scheduler import Candidate, ProjectLoad, first_task, project_order, task_gives_up
from ..states import Event, ProjectState, TaskKind, TaskState, project_state, task_move
from .database import clock
from .node_records import NodeRecords


class Store(NodeRecords):
    """The farm's database: projects and their tasks, on top of the node records."""

    # -- projects ---------------------------------------------------------------------------

    def create_project(self, fields: dict[str, Any]) -> str:
        """Insert a project and its probe task; returns the new id."""
        now = clock()
        with self._tx() as db:
            while True:
                pid = secrets.token_hex(4)
                if not db.execute("SELECT 1 FROM projects WHERE id = ?", (pid,)).fetchone():
                    break
            db.execute(
                "INSERT INTO projects (id, title, blend, sha256, archive_size, animation,"
                " frame_start, frame_end, tiles, overscan, state, size, created, updated,"
                " file_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    pid,
                    fields["title"],
                    fields["blend"],
                    fields["sha256"],
                    fields["archive_size"],
                    int(fields["animation"]),
                    fields["frame_start"],
                    fields["frame_end"],
                    fields["tiles"],
                    fields["overscan"],
                    ProjectState.QUEUED.value,
                    fields["archive_size"],
                    now,
                    now,
                    fields.get("file_version"),
                ),
            )
            db.execute(
                "INSERT INTO tasks (project_id, kind, state) VALUES (?, ?, ?)",
                (pid, TaskKind.PROBE.value, TaskState.QUEUED.value),
            )
        return pid

    def project(self, pid: str) -> dict[str, Any]:
        """The stored row of a project; NotFound when there is none."""
        with self._lock:
            row = self._db.execute("SELECT * FROM projects WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise NotFound(f"no project {pid!r}")
        return dict(row)

    def projects(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM projects ORDER BY created, id").fetchall()
        return [dict(r) for r in rows]

    def counts(self, pid: str | None = None) -> dict[str, dict[str, int]]:
        """Per project (or for `pid` only): chunks total/done/rendering, frames stitched, tasks
        rendering."""
        out: dict[str, dict[str, int]] = {}
        where, args = ("WHERE project_id = ?", (pid,)) if pid else ("", ())
        with self._lock:
            for row in self._db.execute(
                f"SELECT project_id, kind, state, COUNT(*) FROM tasks {where} GROUP BY 1, 2, 3",
                args,
            ):
                c = out.setdefault(
                    row[0], {"total": 0, "done": 0, "rendering": 0, "busy": 0, "frames": 0}
                )
                if row[2] == TaskState.RENDERING.value:
                    c["busy"] += row[3]
                if row[1] == TaskKind.CHUNK.value:
                    c["total"] += row[3]
                    c["done"] += row[3] if row[2] == TaskState.DONE.value else 0
                    c["rendering"] += row[3] if row[2] == TaskState.RENDERING.value else 0
            for row in self._db.execute(
                f"SELECT project_id, COUNT(*) FROM frames {where} GROUP BY 1", args
            ):
                out.setdefault(
                    row[0], {"total": 0, "done": 0, "rendering": 0, "busy": 0, "frames": 0}
                )["frames"] = row[1]
        return out

    def blocklist(self, pid: str, limit: int) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT node FROM node_failures WHERE project_id = ? AND failures >= ?"
                " ORDER BY node",
                (pid, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def update_project(self, pid: str, **fields: Any) -> None:
        fields["updated"] = clock()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE projects SET {cols} WHERE id = ?", (*fields.values(), pid))

    def add_size(self, pid: str, nbytes: int) -> None:
        with self._tx(changes=False) as db:
            db.execute("UPDATE projects SET size = size + ? WHERE id = ?", (nbytes, pid))

    def delete_project(self, pid: str) -> dict[str, Any]:
        row = self.project(pid)
        with self._tx() as db:
            db.execute("DELETE FROM projects WHERE id = ?", (pid,))
        return row

    def purge(self) -> None:
        """Forget everything, and take a new server identity (nodes drop their caches)."""
        with self._tx() as db:
            for table in ("frames", "node_failures", "tasks", "projects", "nodes"):
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE meta SET value = ? WHERE key = 'server_id'", (secrets.token_hex(8),))

    def sync_state(self, pid: str) -> ProjectState:
        """Move a project to the state its tasks imply (queued/rendering/compositing)."""
        row = self.project(pid)
        c = self.counts(pid).get(pid, {"total": 0, "done": 0, "busy": 0})
        new = project_state(ProjectState(row["state"]), c["total"], c["done"], c["busy"])
        if new.value != row["state"]:
            self.update_project(pid, state=new.value)
        return new

    def retry(self, pid: str) -> None:
        """Put a project in error back to work: failures forgotten, unfinished tasks queued."""
        self.project(pid)
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
                " failed_on = '[]' WHERE project_id = ? AND state != ?",
                (TaskState.QUEUED.value, pid, TaskState.DONE.value),
            )
            db.execute("DELETE FROM node_failures WHERE project_id = ?", (pid,))
            db.execute(
                "UPDATE projects SET state = ?, error = NULL, updated = ? WHERE id = ?",
                (ProjectState.QUEUED.value, clock(), pid),
            )
        self.sync_state(pid)

    # -- tasks ------------------------------------------------------------------------------

    def task(self, task_id: int) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"no task {task_id}")
        return dict(row)

    def tasks(self, pid: str, kind: TaskKind = TaskKind.CHUNK) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE project_id = ? AND kind = ? ORDER BY frame, row, col",
                (pid, kind.value),
            ).fetchall()
        return [dict(r) for r in rows]

    def lease(self, node: str, lease_seconds: float, max_failures: int) -> dict[str, Any] | None:
        """Hand `node` its next task under a lease, or None when there is nothing for it."""
        with self._tx() as db:
            live = (ProjectState.QUEUED.value, ProjectState.RENDERING.value)
            row = db.execute("SELECT blender_version FROM nodes WHERE name = ?", (node,)).fetchone()
            node_version = row[0] if row else None
            projects = [
                p
                for p in db.execute(
                    "SELECT id, created, file_version FROM projects WHERE state IN (?, ?)", live
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
            for row in db.execute(
                "SELECT project_id, node FROM node_failures WHERE failures >= ?", (max_failures,)
            ):
                blocked.setdefault(row[0], set()).add(row[1])
            loads = [
                ProjectLoad(
                    p["id"], p["created"], busy.get(p["id"], 0), frozenset(blocked.get(p["id"], ()))
                )
                for p in projects
            ]
            pick = None
            for pid in project_order(node, loads):
                rows = db.execute(
                    "SELECT id, project_id, frame, row, col, failed_on FROM tasks"
                    " WHERE project_id = ? AND state = ? ORDER BY frame, row, col, id LIMIT ?",
                    # A node fails at most max_failures - 1 tasks of a project it may still do.
                    (pid, TaskState.QUEUED.value, max_failures + 1),
                ).fetchall()
                cands = (
                    Candidate(r[0], r[1], r[2], r[3], r[4], frozenset(json.loads(r[5])))
                    for r in rows
                )
                pick = first_task(node, cands)
                if pick is not None:
                    break
            if pick is None:
                return None
            task_move(TaskState.QUEUED, Event.LEASE)
            now = clock()
            lease = secrets.token_hex(12)
            db.execute(
                "UPDATE tasks SET state = ?, node = ?, lease = ?, lease_expires = ?, started = ?,"
                " leases = json_insert(leases, '$[#]', ?) WHERE id = ?",
                (
                    TaskState.RENDERING.value,
                    node,
                    lease,
                    now + lease_seconds,
                    now,
                    lease,
                    pick.task_id,
                ),
            )
            db.execute(
                "UPDATE projects SET state = ?, updated = ? WHERE id = ? AND state = ?",
                (ProjectState.RENDERING.value, now, pick.project_id, ProjectState.QUEUED.value),
            )
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (pick.task_id,)).fetchone()
        return dict(row)

    def leases_of(self, task_id: int) -> list[str]:
        """Every lease ever issued for a task (a late result under an old one is still good)."""
        return list(json.loads(self.task(task_id)["leases"]))

    def renew(self, node: str, task_ids: list[int], lease_seconds: float) -> list[int]:
        """Extend the leases `node` holds; returns the ids it no longer holds (to stop)."""
        lost = []
        with self._tx(changes=False) as db:
            for tid in task_ids:
                cur = db.execute(
                    "UPDATE tasks SET lease_expires = ? WHERE id = ? AND node = ? AND state = ?",
                    (clock() + lease_seconds, tid, node, TaskState.RENDERING.value),
                )
                if cur.rowcount == 0:
                    lost.append(tid)
        return lost

    def complete(self, task_id: int) -> bool:
        """Mark a task done; False when it already was (completion is idempotent)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise NotFound(f"no task {task_id}")
            if row["state"] == TaskState.DONE.value:
                return False
            task_move(TaskState(row["state"]), Event.COMPLETE)
            db.execute(
                "UPDATE tasks SET state = ?, lease = NULL, lease_expires = NULL, finished = ?"
                " WHERE id = ?",
                (TaskState.DONE.value, clock(), task_id),
            )
            if row["node"] and row["kind"] == TaskKind.CHUNK.value:
                db.execute(
                    "UPDATE nodes SET chunks_done = chunks_done + 1 WHERE name = ?", (row["node"],)
                )
        return True

    def add_chunks(self, pid: str, frames: list[int], tiles: int, **fields: Any) -> None:
        """Store what the probe found and create every chunk task of the project."""
        fields["updated"] = clock()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE projects SET {cols} WHERE id = ?", (*fields.values(), pid))
            if db.execute(
                "SELECT 1 FROM tasks WHERE project_id = ? AND kind = ?", (pid, TaskKind.CHUNK.value)
            ).fetchone():
                return
            db.executemany(
                "INSERT INTO tasks (project_id, kind, frame, row, col, state) VALUES (?,?,?,?,?,?)",
                [
                    (pid, TaskKind.CHUNK.value, f, r, c, TaskState.QUEUED.value)
                    for f in frames
                    for r in range(tiles)
                    for c in range(tiles)
                ],
            )

    def release(self, task_id: int, event: Event) -> None:
        """Put a rendering task back in the queue (expired lease, or handed back by its node)."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None or row[0] != TaskState.RENDERING.value:
                return
            task_move(TaskState.RENDERING, event)
            db.execute(
                "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL"
                " WHERE id = ?",
                (TaskState.QUEUED.value, task_id),
            )

    def fail(self, task_id: int, node: str, message: str, max_failures: int) -> str | None:
        """Record a failed task; returns the project's error message when it must give up."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None or row["state"] != TaskState.RENDERING.value:
                return None
            failed = set(json.loads(row["failed_on"])) | {node}
            db.execute(
                "UPDATE tasks SET state = ?, node = NULL, lease = NULL, lease_expires = NULL,"
                " failed_on = ?, last_error = ? WHERE id = ?",
                (TaskState.QUEUED.value, json.dumps(sorted(failed)), message, task_id),
            )
            db.execute(
                "INSERT INTO node_failures VALUES (?, ?, 1) ON CONFLICT (project_id, node)"
                " DO UPDATE SET failures = failures + 1",
                (row["project_id"], node),
            )
            online = {
                r[0] for r in db.execute("SELECT name FROM nodes WHERE offline = 0").fetchall()
            }
            blocked = {
                r[0]
                for r in db.execute(
                    "SELECT node FROM node_failures WHERE project_id = ? AND failures >= ?",
                    (row["project_id"], max_failures),
                )
            }
            usable = online - blocked
            gives_up = task_gives_up(frozenset(failed), frozenset(online), max_failures) or (
                bool(online) and not usable
            )
            if gives_up:
                db.execute(
                    "UPDATE projects SET state = ?, error = ?, updated = ? WHERE id = ?",
                    (ProjectState.ERROR.value, message, clock(), row["project_id"]),
                )
                return message
        return None

    def expire_leases(self) -> list[int]:
        """Requeue every task whose lease ran out; returns their ids."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, project_id FROM tasks WHERE state = ? AND lease_expires < ?",
                (TaskState.RENDERING.value, clock()),
            ).fetchall()
        for tid, _pid in rows:
            self.release(tid, Event.EXPIRE)
        for pid in {r[1] for r in rows}:
            self.sync_state(pid)
        return [r[0] for r in rows]

    def mark_frame(self, pid: str, frame: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO frames VALUES (?, ?)", (pid, frame))
            db.execute("UPDATE projects SET thumbnail = 1 WHERE id = ?", (pid,))

    def stitched_frames(self, pid: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT frame FROM frames WHERE project_id = ?", (pid,))
            return {r[0] for r in rows}
