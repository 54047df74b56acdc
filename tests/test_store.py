"""The store on a real SQLite file: migrations, typed rows, transactions, versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from apphelpers import PROBE, InProcessFarm, png_bytes
from blendfarm.errors import BlendfarmError, NotFound
from blendfarm.server.migrations import SCHEMA_VERSION, DatabaseTooNew
from blendfarm.server.rows import NewProject, ProjectCounts, ProjectRow
from blendfarm.server.store import Store
from blendfarm.server.validate import plan_from_probe
from blendfarm.states import IllegalTransition, ProjectState, TaskKind, TaskState

# The schema of the first release, before versions were tracked (no file_version column).
FIRST_RELEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, blend TEXT NOT NULL,
  sha256 TEXT NOT NULL, archive_size INTEGER NOT NULL,
  animation INTEGER NOT NULL, frame_start INTEGER, frame_end INTEGER,
  tiles INTEGER NOT NULL, overscan INTEGER NOT NULL,
  state TEXT NOT NULL, error TEXT,
  width INTEGER, height INTEGER, fps REAL, fps_base REAL, probe TEXT,
  warnings TEXT NOT NULL DEFAULT '[]', size INTEGER NOT NULL DEFAULT 0,
  result TEXT, thumbnail INTEGER NOT NULL DEFAULT 0,
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
OLD_PID = "c0ffee01"
OLD_ROWS = f"""
INSERT INTO meta VALUES ('server_id', 'feedfacecafebeef');
INSERT INTO projects VALUES ('{OLD_PID}', 'Old shot', 'scene.blend', 'abc', 100, 1, 1, 2, 1, 0,
  'rendering', NULL, 31, 23, 24.0, 1.0, '{{"fps": 24}}', '["a warning"]', 100, NULL, 0,
  1000.0, 1000.0);
INSERT INTO tasks (project_id, kind, frame, state, node, leases)
  VALUES ('{OLD_PID}', 'probe', 0, 'done', 'n1', '["p1"]');
INSERT INTO tasks (project_id, kind, frame, state, node, leases, finished)
  VALUES ('{OLD_PID}', 'chunk', 1, 'done', 'n1', '["c1"]', 1001.0);
INSERT INTO tasks (project_id, kind, frame, state, failed_on)
  VALUES ('{OLD_PID}', 'chunk', 2, 'queued', '["n9"]');
INSERT INTO node_failures VALUES ('{OLD_PID}', 'n9', 1);
INSERT INTO nodes (name, blender_version, started, last_seen, chunks_done, log)
  VALUES ('n1', '3.4.1', 1000.0, 1001.0, 1, '["Fra:1"]');
"""


def old_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA + OLD_ROWS)
    db.close()


def schema_of(path: Path) -> dict[str, list[tuple[str, str]]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {
            t: sorted((r[1], r[2]) for r in db.execute(f"PRAGMA table_info({t})")) for t in tables
        }
        out["indexes"] = sorted(
            (r[0], r[1])
            for r in db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'")
        )
        out["triggers"] = sorted(
            (r[0], r[1])
            for r in db.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'")
        )
    db.close()
    return out


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
    db.close()
    return int(version)


def new_project(**changes: object) -> NewProject:
    base = NewProject(
        title="t",
        blend="scene.blend",
        sha256="0" * 64,
        archive_size=10,
        animation=True,
        frame_start=1,
        frame_end=2,
        tiles=1,
        overscan=0,
        file_version="3.4",
    )
    return msgspec.structs.replace(base, **changes)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "farm.db")
    yield s  # type: ignore[misc]
    s.close()


def test_a_database_of_the_first_release_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old_database(old)
    assert user_version(old) == 0
    store = Store(old)
    try:
        p = store.projects.get(OLD_PID)
        assert (p.title, p.state, p.animation, p.file_version) == (
            "Old shot",
            ProjectState.RENDERING,
            True,
            None,
        )
        assert p.warnings == ["a warning"] and p.probe == {"fps": 24}
        assert [t.state for t in store.tasks.of_project(OLD_PID)] == [
            TaskState.DONE,
            TaskState.QUEUED,
        ]
        assert store.nodes.get("n1").log == ["Fra:1"]
        assert store.db.server_id == "feedfacecafebeef"
        assert store.projects.blocklist(OLD_PID, 1) == ["n9"]
        # The counts kept on the project row start from the tasks it already had.
        assert store.projects.counts(OLD_PID)[OLD_PID] == ProjectCounts(total=2, done=1)
    finally:
        store.close()
    fresh = tmp_path / "fresh.db"
    Store(fresh).close()
    assert user_version(old) == user_version(fresh) == SCHEMA_VERSION
    assert schema_of(old) == schema_of(fresh)  # a migrated file is a fresh one, rows aside


def test_the_farm_renders_on_a_migrated_database(tmp_path: Path) -> None:
    db = tmp_path / "data" / "blendfarm.db"
    old_database(db)
    folder = tmp_path / "data" / "projects" / OLD_PID  # as the first release left it
    for sub in ("chunks", "frames"):
        (folder / sub).mkdir(parents=True)
    (folder / "chunks" / "1-0-0.png").write_bytes(png_bytes(31, 23, 1))
    farm = InProcessFarm(tmp_path)
    try:
        p = farm.client.get(f"/api/projects/{OLD_PID}").json()
        assert (p["state"], p["chunks_done"], p["chunks_total"]) == ("rendering", 1, 2)
        task = farm.lease("n1")
        assert task is not None and (task["project"], task["frame"]) == (OLD_PID, 2)
        assert farm.answer(task).json()["accepted"] is True
        farm.background.composite_all()
        p = farm.client.get(f"/api/projects/{OLD_PID}").json()
        assert p["state"] == "done" and p["frames_done"] == 2
        assert farm.client.get(p["result_url"]).headers["content-type"] == "video/mp4"
        assert farm.client.get("/api/nodes").json()[0]["chunks_done"] == 2
    finally:
        farm.client.close()
        farm.farm.close()


def test_projects_from_before_the_queue_controls_keep_their_order_and_are_not_announced(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.db"
    old_database(old)
    store = Store(old)
    try:
        p = store.projects.get(OLD_PID)
        assert (p.priority, p.require_tags, p.frame_order.value) == (50, [], "sequential")
        assert p.notified == p.state.value  # nothing old is told to a new notifier
        assert store.projects.to_notify(frozenset(ProjectState)) == []
        assert all(t.rank == 0 and t.seconds is None for t in store.tasks.of_project(OLD_PID))
        assert store.nodes.get("n1").disabled is False
    finally:
        store.close()


def test_opening_a_database_twice_migrates_it_once(tmp_path: Path) -> None:
    path = tmp_path / "farm.db"
    first = Store(path)
    pid = first.projects.create(new_project())
    server_id = first.db.server_id
    first.close()
    again = Store(path)
    try:
        assert again.projects.get(pid).title == "t" and again.db.server_id == server_id
    finally:
        again.close()
    assert user_version(path) == SCHEMA_VERSION


def test_a_database_from_a_newer_blendfarm_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "farm.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(DatabaseTooNew) as caught:
        Store(path)
    assert isinstance(caught.value, BlendfarmError) and "\n" not in str(caught.value)
    assert "newer blendfarm" in str(caught.value)


def test_rows_are_typed_and_frozen(store: Store) -> None:
    pid = store.projects.create(new_project(animation=False, frame_end=1))
    store.nodes.seen("n1", {"blender_version": "3.4.1", "cores": 8})
    task = store.tasks.lease("n1", 60, 3)
    assert task is not None and task.kind is TaskKind.PROBE and task.state is TaskState.RENDERING
    assert task.node == "n1" and task.leases == [task.lease]
    p = store.projects.get(pid)
    assert p.state is ProjectState.RENDERING and p.animation is False and p.warnings == []
    assert p.probe is None and p.thumbnail is False
    node = store.nodes.get("n1")
    assert node.info == {"blender_version": "3.4.1", "cores": 8} and node.offline is False
    assert node.current is not None and node.current.kind is TaskKind.PROBE
    assert node.current.project_id == pid
    with pytest.raises(AttributeError):
        p.title = "changed"  # type: ignore[misc]
    with pytest.raises(NotFound):
        store.projects.get("nope")
    with pytest.raises(NotFound):
        store.nodes.get("nope")
    with pytest.raises(NotFound):
        store.tasks.get(424242)


def test_a_probe_result_stores_the_plan_and_makes_every_chunk(store: Store) -> None:
    # Compositing per chunk (finish never): the plan warns about seams.
    made = new_project(tiles=2, frame_start=None, frame_end=None, finish="never")
    pid = store.projects.create(made)
    probe = store.tasks.lease("n1", 60, 3)
    assert probe is not None
    row = store.projects.get(pid)
    plan = plan_from_probe(msgspec.structs.asdict(row), {**PROBE, "compositor": True})
    assert store.tasks.finish_probe(probe.id, plan, {**PROBE, "compositor": True})
    assert not store.tasks.finish_probe(probe.id, plan, PROBE)  # a second result: ignored
    p = store.projects.get(pid)
    assert (p.width, p.height, p.frame_start, p.frame_end, p.fps) == (31, 23, 1, 2, 24.0)
    assert p.state is ProjectState.QUEUED and len(p.warnings) == 1 and p.probe is not None
    chunks = store.tasks.of_project(pid)
    assert [(t.frame, t.row, t.col) for t in chunks] == [
        (f, r, c) for f in (1, 2) for r in (0, 1) for c in (0, 1)
    ]


def test_a_failed_transaction_leaves_nothing_and_changes_no_version(store: Store) -> None:
    before = store.db.version
    with pytest.raises(ZeroDivisionError), store.db.transaction():
        store.projects.create(new_project())  # nested: a savepoint of the outer transaction
        1 / 0  # noqa: B018
    assert store.projects.all() == [] and store.db.version == before


def test_an_inner_transaction_that_fails_is_undone_alone(store: Store) -> None:
    with store.db.transaction():
        kept = store.projects.create(new_project(title="kept"))
        with pytest.raises(ZeroDivisionError), store.db.transaction():
            store.projects.create(new_project(title="undone"))
            1 / 0  # noqa: B018
    assert [p.id for p in store.projects.all()] == [kept]


def test_the_version_grows_on_changes_only(store: Store) -> None:
    v0 = store.db.version
    pid = store.projects.create(new_project())
    v1 = store.db.version
    assert v1 > v0
    store.projects.get(pid)
    store.projects.counts()
    store.projects.sync_state(pid)  # nothing to move
    store.tasks.renew("n1", [], 60)
    assert store.db.version == v1
    store.projects.set_error(pid, "boom")
    assert store.db.version > v1


def test_retrying_a_project_that_is_not_in_error_is_a_bug_in_the_caller(store: Store) -> None:
    pid = store.projects.create(new_project())
    with pytest.raises(IllegalTransition):
        store.projects.retry(pid)
    with pytest.raises(IllegalTransition):
        store.projects.set_result(pid, "result.png")  # not compositing: nothing to finish
    assert store.projects.get(pid).state is ProjectState.QUEUED


def test_an_error_is_kept_until_the_project_is_retried(store: Store) -> None:
    pid = store.projects.create(new_project())
    store.projects.set_error(pid, "first")
    assert store.projects.sync_state(pid) is ProjectState.ERROR
    assert store.projects.get(pid).error == "first"
    assert store.projects.retry(pid) is ProjectState.QUEUED
    assert store.projects.get(pid).error is None


def test_purge_forgets_everything_and_takes_a_new_identity(store: Store) -> None:
    store.projects.create(new_project())
    store.nodes.seen("n1")
    old_id = store.db.server_id
    store.purge()
    assert store.projects.all() == [] and store.nodes.all() == []
    assert store.db.server_id not in ("", old_id)


def test_deleting_a_project_returns_its_row_and_forgets_its_tasks(store: Store) -> None:
    pid = store.projects.create(new_project())
    store.nodes.seen("n1")
    task = store.tasks.lease("n1", 60, 3)
    assert task is not None and store.nodes.get("n1").current is not None
    row = store.projects.delete(pid)
    assert isinstance(row, ProjectRow) and row.id == pid
    with pytest.raises(NotFound):
        store.tasks.get(task.id)
    assert store.nodes.get("n1").current is None
    assert store.tasks.renew("n1", [task.id], 60) == [task.id]  # its node is told to stop
