"""The farm's SQLite file (WAL): schema, one connection, transactions, key-value meta.

Every method of the store runs under one lock in one transaction, so the server's threads see
a consistent farm; `version` grows on every change (the event stream watches it).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def clock() -> float:
    return time.time()


class Database:
    """One SQLite connection behind one lock."""

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
