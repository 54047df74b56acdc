"""All farm state in one SQLite file (WAL): projects, tasks (probes and chunks), nodes.

Every method runs under one lock in one transaction, so the server's threads see a
consistent farm. A restart on the same file finds every project and finished chunk.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..blendversion import can_open
from ..errors import NotFound
from ..scheduler import Candidate, ProjectLoad, first_task, project_order, task_gives_up
from ..states import Event, ProjectState, TaskKind, TaskState, project_state, task_move

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, blend TEXT NOT NULL,
  sha256 TEXT NOT NULL, archive_size INTEGER NOT NULL,
  animation INTEGER NOT NULL, frame_start INTEGER, frame_end INTEGER,
  tiles INTEGER NOT NULL, overscan INTEGER NOT NULL,
  state TEXT NOT NULL, error TEXT,
  width INTEGER, height INTEGER, fps REAL, fps_base REAL, probe TEXT,
  warnings TEXT NOT NULL DEFAULT '[]', size INTEGER NOT NULL DEFAULT 0,
  result TEXT, thumbnail INTEGER NOT NULL DEFAULT 0, file_version TEXT,
  created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
  id INTEGER PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  kind TEXT NOT NULL, frame INTEGER NOT NULL DEFAULT 0, row INTEGER NOT NULL DEFAULT 0,
  col INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, node TEXT, lease TEXT,
  lease_expires REAL, started REAL, finished REAL, failed_on TEXT NOT NULL DEFAULT '[]',
  last_error TEXT, leases TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, project_id);
CREATE INDEX IF NOT EXISTS tasks_by_project ON tasks(project_id, frame);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks(project_id, state, frame, row, col);
CREATE TABLE IF NOT EXISTS frames (
  project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE, frame INTEGER NOT NULL,
  PRIMARY KEY (project_id, frame)
);
CREATE TABLE IF NOT EXISTS node_failures (
  project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE, node TEXT NOT NULL,
  failures INTEGER NOT NULL, PRIMARY KEY (project_id, node)
);
CREATE TABLE IF NOT EXISTS nodes (
  name TEXT PRIMARY KEY, blender_version TEXT, started REAL NOT NULL, last_seen REAL NOT NULL,
  chunks_done INTEGER NOT NULL DEFAULT 0, info TEXT NOT NULL DEFAULT '{}',
  log TEXT NOT NULL DEFAULT '[]', offline INTEGER NOT NULL DEFAULT 0
);
"""

LOG_LINES_KEPT = 200


def _now() -> float:
    return time.time()


class Store:
    """The farm's SQLite database. `version` grows on every change (for the event stream)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self.version = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._migrate()
            if self._meta("server_id") is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('server_id', ?)", (secrets.token_hex(8),)
                )

    def _migrate(self) -> None:
        """Columns added since the first release, for databases made before them."""
        have = {r[1] for r in self._db.execute("PRAGMA table_info(projects)")}
        if "file_version" not in have:
            self._db.execute("ALTER TABLE projects ADD COLUMN file_version TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self, changes: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if changes:
                self.version += 1

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def server_id(self) -> str:
        with self._lock:
            return self._meta("server_id") or ""

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- projects ---------------------------------------------------------------------------

    def create_project(self, fields: dict[str, Any]) -> str:
        """Insert a project and its probe task; returns the new id."""
        now = _now()
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
        fields["updated"] = _now()
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
                (ProjectState.QUEUED.value, _now(), pid),
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
            now = _now()
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
                    (_now() + lease_seconds, tid, node, TaskState.RENDERING.value),
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
                (TaskState.DONE.value, _now(), task_id),
            )
            if row["node"] and row["kind"] == TaskKind.CHUNK.value:
                db.execute(
                    "UPDATE nodes SET chunks_done = chunks_done + 1 WHERE name = ?", (row["node"],)
                )
        return True

    def add_chunks(self, pid: str, frames: list[int], tiles: int, **fields: Any) -> None:
        """Store what the probe found and create every chunk task of the project."""
        fields["updated"] = _now()
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
                    (ProjectState.ERROR.value, message, _now(), row["project_id"]),
                )
                return message
        return None

    def expire_leases(self) -> list[int]:
        """Requeue every task whose lease ran out; returns their ids."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM tasks WHERE state = ? AND lease_expires < ?",
                (TaskState.RENDERING.value, _now()),
            ).fetchall()
        for (tid,) in rows:
            self.release(tid, Event.EXPIRE)
        return [r[0] for r in rows]

    def mark_frame(self, pid: str, frame: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO frames VALUES (?, ?)", (pid, frame))
            db.execute("UPDATE projects SET thumbnail = 1 WHERE id = ?", (pid,))

    def stitched_frames(self, pid: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT frame FROM frames WHERE project_id = ?", (pid,))
            return {r[0] for r in rows}

    # -- nodes ------------------------------------------------------------------------------

    def node_seen(self, name: str, info: dict[str, Any] | None = None) -> None:
        now = _now()
        with self._tx(changes=info is not None) as db:
            cur = db.execute(
                "UPDATE nodes SET last_seen = ?, offline = 0 WHERE name = ?", (now, name)
            )
            if cur.rowcount == 0:
                db.execute(
                    "INSERT INTO nodes (name, started, last_seen) VALUES (?, ?, ?)",
                    (name, now, now),
                )
                self.version += 1
            if info is not None:
                db.execute(
                    "UPDATE nodes SET info = ?, blender_version = ?, started = ? WHERE name = ?",
                    (json.dumps(info), info.get("blender_version"), now, name),
                )

    def node_log(self, name: str, lines: list[str]) -> None:
        if not lines:
            return
        with self._tx() as db:
            row = db.execute("SELECT log FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is None:
                return
            log = (json.loads(row[0]) + lines)[-LOG_LINES_KEPT:]
            db.execute("UPDATE nodes SET log = ? WHERE name = ?", (json.dumps(log), name))

    def mark_offline(self, timeout: float) -> list[str]:
        """Nodes silent for `timeout` seconds go offline; returns their names."""
        with self._tx(changes=False) as db:
            rows = db.execute(
                "SELECT name FROM nodes WHERE offline = 0 AND last_seen < ?", (_now() - timeout,)
            ).fetchall()
            for (name,) in rows:
                db.execute("UPDATE nodes SET offline = 1 WHERE name = ?", (name,))
        if rows:
            self.version += 1
        return [r[0] for r in rows]

    def node_left(self, name: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE nodes SET offline = 1 WHERE name = ?", (name,))

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM nodes ORDER BY name").fetchall()
            current = {
                r["node"]: dict(r)
                for r in self._db.execute(
                    "SELECT t.node, t.project_id, t.kind, t.frame, t.row, t.col, p.title"
                    " FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.state = ?",
                    (TaskState.RENDERING.value,),
                )
            }
        out = []
        for r in rows:
            node = dict(r)
            node["log"] = json.loads(node["log"])
            node["info"] = json.loads(node["info"])
            node["current"] = current.get(node["name"])
            out.append(node)
        return out
