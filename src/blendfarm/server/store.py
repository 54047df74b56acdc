"""All farm state in one SQLite file: projects, tasks (probes and chunks), nodes.

`Store` holds the one `Database` and the three stores that share it. A restart on the same
file finds every project and finished chunk.
"""

from __future__ import annotations

import time
from pathlib import Path

from .chunk_images import ChunkImages
from .chunk_tasks import Planner
from .database import Clock, Database
from .nodes_store import NodeStore
from .projects_store import ProjectStore
from .tasks_store import TaskStore


class Store:
    """The farm's database: `db`, `projects`, `tasks`, `nodes`, `plans` (projects whose
    scene the server read at submit) and `images` (small chunks' images)."""

    def __init__(self, path: Path, clock: Clock = time.time):
        self.db = Database(path, clock)
        self.projects = ProjectStore(self.db)
        self.tasks = TaskStore(self.db, self.projects)
        self.nodes = NodeStore(self.db)
        self.plans = Planner(self.db, self.projects)
        self.images = ChunkImages(self.db)

    def purge(self) -> None:
        """Forget everything, and take a new server identity (nodes drop their caches)."""
        with self.db.transaction() as db:
            for table in ("chunk_images", "frames", "node_failures", "tasks", "projects", "nodes"):
                db.execute(f"DELETE FROM {table}")
            self.db.new_server_id()

    def close(self) -> None:
        self.db.close()
