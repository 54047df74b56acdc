"""The nodes the server has seen: when, with which Blender, and their recent log."""

from __future__ import annotations

import json
from typing import Any

from ..errors import NotFound
from ..states import TaskState
from .database import Database
from .rows import CurrentTask, NodeRow, current_task, node_row

LOG_LINES_KEPT = 200


class NodeStore:
    """Node rows of the farm's database."""

    def __init__(self, db: Database):
        self.db = db

    def seen(self, name: str, info: dict[str, Any] | None = None) -> None:
        """A node spoke: it is online now; `info` when it (re)registers."""
        now = self.db.clock()
        with self.db.transaction(changes=info is not None) as db:
            cur = db.execute(
                "UPDATE nodes SET last_seen = ?, offline = 0 WHERE name = ?", (now, name)
            )
            if cur.rowcount == 0:
                db.execute(
                    "INSERT INTO nodes (name, started, last_seen) VALUES (?, ?, ?)",
                    (name, now, now),
                )
                self.db.changed()
            if info is not None:
                db.execute(
                    "UPDATE nodes SET info = ?, blender_version = ?, started = ? WHERE name = ?",
                    (json.dumps(info), info.get("blender_version"), now, name),
                )

    def append_log(self, name: str, lines: list[str]) -> None:
        """Add lines to a node's log (the last LOG_LINES_KEPT are kept)."""
        if not lines:
            return
        with self.db.transaction() as db:
            row = db.execute("SELECT log FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is None:
                return
            log = (json.loads(row[0]) + lines)[-LOG_LINES_KEPT:]
            db.execute("UPDATE nodes SET log = ? WHERE name = ?", (json.dumps(log), name))

    def mark_offline(self, timeout: float) -> list[str]:
        """Nodes silent for `timeout` seconds go offline; returns their names."""
        with self.db.transaction(changes=False) as db:
            rows = db.execute(
                "SELECT name FROM nodes WHERE offline = 0 AND last_seen < ?",
                (self.db.clock() - timeout,),
            ).fetchall()
            for (name,) in rows:
                db.execute("UPDATE nodes SET offline = 1 WHERE name = ?", (name,))
            if rows:
                self.db.changed()
        return [r[0] for r in rows]

    def left(self, name: str) -> None:
        """A node said goodbye: it is offline."""
        with self.db.transaction() as db:
            db.execute("UPDATE nodes SET offline = 1 WHERE name = ?", (name,))

    def set_disabled(self, name: str, disabled: bool) -> None:
        """A disabled node finishes what it renders and then takes nothing until enabled."""
        with self.db.transaction() as db:
            cur = db.execute("UPDATE nodes SET disabled = ? WHERE name = ?", (int(disabled), name))
            if cur.rowcount == 0:
                raise NotFound(f"no node {name!r}")

    def all(self) -> list[NodeRow]:
        """Every node, by name, with the task it renders (if any)."""
        with self.db.read() as db:
            rows = db.execute("SELECT * FROM nodes ORDER BY name").fetchall()
            current = self._current(db.execute(_CURRENT, (TaskState.RENDERING.value,)))
        return [node_row(r, current.get(r["name"])) for r in rows]

    def get(self, name: str) -> NodeRow:
        """One node; NotFound when the server never saw it."""
        with self.db.read() as db:
            row = db.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no node {name!r}")
            current = self._current(
                db.execute(
                    _CURRENT + " AND (t.node = ? OR t.copy_node = ?)",
                    (TaskState.RENDERING.value, name, name),
                )
            )
        return node_row(row, current.get(name))

    @staticmethod
    def _current(rows: Any) -> dict[str, CurrentTask]:
        """Each node's task, for the node that renders it and the one rendering its copy."""
        out: dict[str, CurrentTask] = {}
        for r in rows:
            for node in (r["node"], r["copy_node"]):
                if node:
                    out[node] = current_task(r)
        return out


_CURRENT = (
    "SELECT t.node, t.copy_node, t.project_id, t.kind, t.frame, t.row, t.col, p.title"
    " FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.state = ?"
)
