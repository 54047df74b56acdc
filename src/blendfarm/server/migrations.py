"""The database's schema as an ordered list of steps, tracked by `PRAGMA user_version`.

Step N takes a database from version N-1 to N, in one transaction. A file made before
versions were tracked has user_version 0 and may already hold the tables (without the
columns added since): step 1 brings it, like a fresh file, to the first tracked schema.
Add a step at the end for every change; never edit a step that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import BlendfarmError

# The schema of step 1. Every statement may run on a file that already has the table.
V1_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS projects (
      id TEXT PRIMARY KEY, title TEXT NOT NULL, blend TEXT NOT NULL,
      sha256 TEXT NOT NULL, archive_size INTEGER NOT NULL,
      animation INTEGER NOT NULL, frame_start INTEGER, frame_end INTEGER,
      tiles INTEGER NOT NULL, overscan INTEGER NOT NULL,
      state TEXT NOT NULL, error TEXT,
      width INTEGER, height INTEGER, fps REAL, fps_base REAL, probe TEXT,
      warnings TEXT NOT NULL DEFAULT '[]', size INTEGER NOT NULL DEFAULT 0,
      result TEXT, thumbnail INTEGER NOT NULL DEFAULT 0, file_version TEXT,
      created REAL NOT NULL, updated REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tasks (
      id INTEGER PRIMARY KEY,
      project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      kind TEXT NOT NULL, frame INTEGER NOT NULL DEFAULT 0, row INTEGER NOT NULL DEFAULT 0,
      col INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, node TEXT, lease TEXT,
      lease_expires REAL, started REAL, finished REAL, failed_on TEXT NOT NULL DEFAULT '[]',
      last_error TEXT, leases TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, project_id)",
    "CREATE INDEX IF NOT EXISTS tasks_by_project ON tasks(project_id, frame)",
    "CREATE INDEX IF NOT EXISTS tasks_queue ON tasks(project_id, state, frame, row, col)",
    """CREATE TABLE IF NOT EXISTS frames (
      project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      frame INTEGER NOT NULL, PRIMARY KEY (project_id, frame)
    )""",
    """CREATE TABLE IF NOT EXISTS node_failures (
      project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE, node TEXT NOT NULL,
      failures INTEGER NOT NULL, PRIMARY KEY (project_id, node)
    )""",
    """CREATE TABLE IF NOT EXISTS nodes (
      name TEXT PRIMARY KEY, blender_version TEXT, started REAL NOT NULL,
      last_seen REAL NOT NULL, chunks_done INTEGER NOT NULL DEFAULT 0,
      info TEXT NOT NULL DEFAULT '{}', log TEXT NOT NULL DEFAULT '[]',
      offline INTEGER NOT NULL DEFAULT 0
    )""",
)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _step_1_tables(db: sqlite3.Connection) -> None:
    """Every table, on a fresh file or on one made before versions were tracked."""
    for statement in V1_TABLES:
        db.execute(statement)
    if "file_version" not in _columns(db, "projects"):  # added after the first release
        db.execute("ALTER TABLE projects ADD COLUMN file_version TEXT")


def _step_2_owner_keys(db: sqlite3.Connection) -> None:
    """Projects keep the hash of their owner key (delete, retry... need it or the admin).

    Projects made before have none: only the admin may change them."""
    db.execute("ALTER TABLE projects ADD COLUMN owner_key_hash TEXT")


def _step_4_queue_controls(db: sqlite3.Connection) -> None:
    """Priorities, required tags, frame order, notifications and the notice sent; each
    chunk's place in the render order and its render time; nodes an admin disabled."""
    for column in (
        "priority INTEGER NOT NULL DEFAULT 50",
        "require_tags TEXT NOT NULL DEFAULT '[]'",
        "frame_order TEXT NOT NULL DEFAULT 'sequential'",
        "notify TEXT",
        "notified TEXT",
    ):
        db.execute(f"ALTER TABLE projects ADD COLUMN {column}")
    db.execute("UPDATE projects SET notified = state")  # nothing old is announced at upgrade
    db.execute("ALTER TABLE tasks ADD COLUMN rank INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE tasks ADD COLUMN seconds REAL")
    db.execute("ALTER TABLE nodes ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX tasks_ranked ON tasks(project_id, state, rank, frame, row, col)")


Step = Callable[[sqlite3.Connection], None]


def _step_3_project_device(db: sqlite3.Connection) -> None:
    """Which slots of a node may render a project (any, gpu, cpu, scene)."""
    db.execute("ALTER TABLE projects ADD COLUMN device TEXT NOT NULL DEFAULT 'any'")


def _step_5_content_and_copies(db: sqlite3.Connection) -> None:
    """A project's content hash (its files and .blend name: equal for identical projects,
    whatever the zip); a task's second lease while an idle node renders a copy of it.

    Projects made before have no content hash: nodes key them by their archive's hash."""
    db.execute("ALTER TABLE projects ADD COLUMN content_sha TEXT")
    for column in (
        "copy_node TEXT",
        "copy_lease TEXT",
        "copy_expires REAL",
        "copy_started REAL",
        "copies INTEGER NOT NULL DEFAULT 0",
    ):
        db.execute(f"ALTER TABLE tasks ADD COLUMN {column}")


def _step_6_scene_read(db: sqlite3.Connection) -> None:
    """What the server read from the .blend at submit (JSON, NULL when it could not), and
    whether the project renders its scene's own frame range (none was given at submit)."""
    db.execute("ALTER TABLE projects ADD COLUMN scene TEXT")
    db.execute("ALTER TABLE projects ADD COLUMN scene_frames INTEGER NOT NULL DEFAULT 0")


def _step_7_finish_mode(db: sqlite3.Connection) -> None:
    """When tiled frames render raw and are finished whole: never, auto or always. Projects
    made before render on as they began (direct chunks): never."""
    db.execute("ALTER TABLE projects ADD COLUMN finish TEXT NOT NULL DEFAULT 'never'")


def _step_8_output_format(db: sqlite3.Connection) -> None:
    """The scene's output format, as the probe read it (JSON of formats.OutputFormat; NULL:
    probed by a node too old to say, rendered as PNG)."""
    db.execute("ALTER TABLE projects ADD COLUMN output_format TEXT")


# Counted on the project row by step 9: column -> (task kind, task state), None for any.
TASK_COUNTS = {
    "chunks_total": ("chunk", None),
    "chunks_done": ("chunk", "done"),
    "chunks_rendering": ("chunk", "rendering"),
    "tasks_busy": (None, "rendering"),
    "finishes_total": ("finish", None),
    "finishes_done": ("finish", "done"),
}


def _counted(row: str, kind: str | None, state: str | None) -> str:
    """An SQL test that the task `row` (NEW, OLD or tasks) is of `kind` and in `state`."""
    tests = [f"{row}.kind = '{kind}'"] if kind else []
    tests += [f"{row}.state = '{state}'"] if state else []
    return " AND ".join(tests)


def _count_change(row: str, sign: str) -> str:
    """An UPDATE adding (+) or taking (-) the task `row` to or from its project's counts."""
    terms = ", ".join(
        f"{column} = {column} {sign} ({_counted(row, kind, state)})"
        for column, (kind, state) in TASK_COUNTS.items()
    )
    return f"UPDATE projects SET {terms} WHERE id = {row}.project_id;"


def _step_9_task_counts(db: sqlite3.Connection) -> None:
    """Every project keeps its task counts on its row (chunks total, done and rendering, tasks
    rendering, finish tasks and those done, frames stitched), kept right by triggers in the
    transaction that changes a task or a stitched frame: reading them is one row, not a count
    over the project's tasks.
    The kind and state names are written out: they are the stored values of this schema."""
    for column in (*TASK_COUNTS, "frames_done"):
        db.execute(f"ALTER TABLE projects ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    for column, (kind, state) in TASK_COUNTS.items():
        db.execute(
            f"UPDATE projects SET {column} = (SELECT COUNT(*) FROM tasks"
            f" WHERE tasks.project_id = projects.id AND {_counted('tasks', kind, state)})"
        )
    db.execute(
        "UPDATE projects SET frames_done ="
        " (SELECT COUNT(*) FROM frames WHERE frames.project_id = projects.id)"
    )
    db.execute(
        "CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks"
        f" BEGIN {_count_change('NEW', '+')} END"
    )
    db.execute(
        "CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks"
        f" BEGIN {_count_change('OLD', '-')} END"
    )
    db.execute(
        "CREATE TRIGGER task_counts_update AFTER UPDATE OF state, kind, project_id ON tasks"
        " WHEN OLD.state IS NOT NEW.state OR OLD.kind IS NOT NEW.kind"
        " OR OLD.project_id IS NOT NEW.project_id"
        f" BEGIN {_count_change('OLD', '-')} {_count_change('NEW', '+')} END"
    )
    db.execute(
        "CREATE TRIGGER frame_counts_insert AFTER INSERT ON frames BEGIN"
        " UPDATE projects SET frames_done = frames_done + 1 WHERE id = NEW.project_id; END"
    )
    db.execute(
        "CREATE TRIGGER frame_counts_delete AFTER DELETE ON frames BEGIN"
        " UPDATE projects SET frames_done = frames_done - 1 WHERE id = OLD.project_id; END"
    )


def _step_10_chunk_images(db: sqlite3.Connection) -> None:
    """Small chunk images kept in the database, written in the transaction that marks the
    chunk done (`chunk_images.ChunkImages`); a row goes with its task."""
    db.execute(
        """CREATE TABLE chunk_images (
          task_id INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
          project_id TEXT NOT NULL, frame INTEGER NOT NULL,
          stored REAL NOT NULL, data BLOB NOT NULL
        )"""
    )
    db.execute("CREATE INDEX chunk_images_by_frame ON chunk_images(project_id, frame)")


STEPS: tuple[Step, ...] = (
    _step_1_tables,
    _step_2_owner_keys,
    _step_3_project_device,
    _step_4_queue_controls,
    _step_5_content_and_copies,
    _step_6_scene_read,
    _step_7_finish_mode,
    _step_8_output_format,
    _step_9_task_counts,
    _step_10_chunk_images,
)
SCHEMA_VERSION = len(STEPS)


class DatabaseTooNew(BlendfarmError):
    status = 500
    code = "database_too_new"


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Run every step the database has not had yet (each in its own transaction); returns
    the version it had before. `db` must be in autocommit mode (isolation_level=None)."""
    before = schema_version(db)
    if before > SCHEMA_VERSION:
        raise DatabaseTooNew(
            f"the database has schema version {before}, made by a newer blendfarm "
            f"(this one knows up to {SCHEMA_VERSION})"
        )
    for version in range(before + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            STEPS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version:d}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return before
