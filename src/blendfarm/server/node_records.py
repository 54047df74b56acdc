"""The nodes the server has seen: when, with which Blender, and their recent log."""

from __future__ import annotations

import json
from typing import Any

from ..states import TaskState
from .database import Database, clock

LOG_LINES_KEPT = 200


class NodeRecords(Database):
    """Node rows of the farm's database."""

    def node_seen(self, name: str, info: dict[str, Any] | None = None) -> None:
        now = clock()
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
                "SELECT name FROM nodes WHERE offline = 0 AND last_seen < ?", (clock() - timeout,)
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
