"""Small chunk results are kept in the database, in the commit that marks the chunk done;
bigger ones are files. Every reader takes the database's image first."""

from __future__ import annotations

import sqlite3
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from apphelpers import ADMIN, InProcessFarm, png_bytes
from blendfarm.errors import BadChunks
from blendfarm.pngio import read_png
from blendfarm.protocol import Accepted
from blendfarm.server import routes_nodes
from blendfarm.tiles import chunk_rect


def _chunk_files(farm: InProcessFarm, pid: str) -> list[str]:
    folder = farm.settings.data / "projects" / pid / "chunks"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _held(farm: InProcessFarm, pid: str) -> int:
    with sqlite3.connect(farm.farm.data.db_path) as db:
        return int(
            db.execute("SELECT COUNT(*) FROM chunk_images WHERE project_id = ?", (pid,)).fetchone()[
                0
            ]
        )


def _raw_names(farm: InProcessFarm, pid: str) -> dict[str, bytes]:
    raw = farm.client.get(f"/api/projects/{pid}/raw")
    assert raw.status_code == 200, raw.text
    with zipfile.ZipFile(BytesIO(raw.content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _sent(row: int, col: int, value: int) -> bytes:
    """The image the simulated node sends for a chunk of the 31x23 test scene in 2x2."""
    rect = chunk_rect(31, 23, 2, row, col)
    return png_bytes(rect.width, rect.height, value)


def _files_for_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results from now on are stored as files, as bigger chunks are."""
    monkeypatch.setattr(routes_nodes, "SMALL_IMAGE_BYTES", 0)


def test_small_results_are_kept_in_the_database_and_make_the_whole_result(
    farm: InProcessFarm,
) -> None:
    farm.register()
    pid = farm.submit({"frames": "1-2", "tiles": "2"}).json()["id"]
    assert farm.run_all() == 1 + 8
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "done"
    assert _chunk_files(farm, pid) == [] and _held(farm, pid) == 8
    names = _raw_names(farm, pid)
    assert len(names) == 8 and names[f"{pid}-2-1-1.png"] == _sent(1, 1, 2)
    frame = read_png(farm.settings.data / "projects" / pid / "frames" / "000002.png")
    assert frame.shape[:2] == (23, 31) and np.all(frame[:, :, 0] == 80)  # each chunk in place


def test_a_damaged_image_in_the_database_is_rendered_again(farm: InProcessFarm) -> None:
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    while (task := farm.lease()) is not None:
        farm.answer(task)
    with sqlite3.connect(farm.farm.data.db_path) as db:
        db.execute(
            "UPDATE chunk_images SET data = x'89504e47' WHERE task_id ="
            " (SELECT id FROM tasks WHERE project_id = ? AND row = 1 AND col = 0"
            " AND kind = 'chunk')",
            (pid,),
        )
    farm.background.composite_all()  # stitched in the worker process: BadChunks comes back
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "rendering" and p["chunks_done"] == 3 and p["error"] is None
    again = farm.lease()
    assert again is not None and (again["row"], again["col"]) == (1, 0)
    farm.answer(again)
    farm.background.composite_all()
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"


def test_a_chunk_rendered_again_as_a_file_replaces_its_image_and_back(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm.register()
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    farm.run_all()
    assert _held(farm, pid) == 4

    def render_again(chunk: str, value: int) -> None:
        resp = farm.client.post(
            f"/api/projects/{pid}/requeue", headers=ADMIN, json={"chunks": [chunk]}
        )
        assert resp.status_code == 200, resp.text
        task = farm.lease()
        assert task is not None
        rect = task["rect"]
        body = png_bytes(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"], value)
        put = farm.client.put(
            f"/api/tasks/{task['id']}/result",
            params={"lease": task["lease"]},
            headers={"Authorization": "Bearer tok-123"},
            content=body,
        )
        assert put.json()["accepted"] is True
        farm.background.composite_all()
        assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"

    with monkeypatch.context() as m:
        _files_for_results(m)
        render_again("1:0:1", 3)
    assert _held(farm, pid) == 3 and _chunk_files(farm, pid) == ["1-0-1.png"]
    assert _raw_names(farm, pid)[f"{pid}-1-0-1.png"] == _sent(0, 1, 3)
    frame = read_png(farm.settings.data / "projects" / pid / "result.png")
    assert frame[0, 30, 0] == 120 and frame[0, 0, 0] == 40  # the file's pixels, the others'

    render_again("1:0:1", 5)  # small again: the database holds it, the file goes
    assert _held(farm, pid) == 4 and _chunk_files(farm, pid) == []
    assert _raw_names(farm, pid)[f"{pid}-1-0-1.png"] == _sent(0, 1, 5)


def test_deleting_a_project_takes_its_images_and_counts_them_freed(farm: InProcessFarm) -> None:
    farm.register()
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    farm.run_all()
    held = sum(len(_sent(r, c, 1)) for r in (0, 1) for c in (0, 1))
    resp = farm.client.delete(f"/api/projects/{pid}", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["freed"] >= held and _held(farm, pid) == 0


def test_the_preview_shows_chunks_kept_in_the_database(farm: InProcessFarm) -> None:
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    for _ in range(3):
        task = farm.lease()
        assert task is not None
        farm.answer(task)
    resp = farm.client.get(f"/api/projects/{pid}/preview")
    assert resp.status_code == 200 and resp.headers["X-Preview-Chunks"] == "2/4"  # +the probe
    task = farm.lease()
    assert task is not None
    farm.answer(task)
    again = farm.client.get(f"/api/projects/{pid}/preview")
    assert again.headers["X-Preview-Chunks"] == "3/4" and again.content != resp.content


def test_a_restarted_server_stitches_from_the_images_it_kept(tmp_path: Path) -> None:
    first = InProcessFarm(tmp_path)
    pid = first.submit({"frame": "1", "tiles": "2"}).json()["id"]
    while (task := first.lease()) is not None:
        first.answer(task)
    first.client.close()
    first.farm.close()  # stopped before compositing
    second = InProcessFarm(tmp_path)
    try:
        second.background.composite_all()
        p = second.client.get(f"/api/projects/{pid}").json()
        assert p["state"] == "done" and _chunk_files(second, pid) == []
    finally:
        second.client.close()
        second.farm.close()


def test_bad_chunks_survive_the_trip_from_the_stitching_process() -> None:
    import pickle

    err = BadChunks([Path("/x/1-0-0.png")], "are damaged")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, BadChunks) and back.paths == err.paths and str(back) == str(err)


def test_a_full_disk_under_the_database_fails_the_result_clearly_and_keeps_nothing(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    farm.answer(farm.lease())  # the probe
    task = farm.lease()
    assert task is not None and task["kind"] == "chunk"

    def full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(farm.farm.store.images, "put", full)
        resp = farm.answer(task)
    assert resp.status_code == 507 and resp.json()["error"]["code"] == "insufficient_storage"
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["chunks_done"] == 0 and _held(farm, pid) == 0  # the chunk's done-mark rolled back
    assert farm.answer(task).json()["accepted"] is True  # the node sends it again: taken
    assert farm.client.get(f"/api/projects/{pid}").json()["chunks_done"] == 1


def test_a_late_small_copy_leaves_the_file_of_the_chunk_already_done(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm.register()
    pid = farm.submit({"frame": "1"}).json()["id"]
    farm.answer(farm.lease())  # the probe
    first = farm.lease()
    assert first is not None
    farm.answer(first)
    farm.client.post(f"/api/projects/{pid}/requeue", headers=ADMIN, json={"chunks": ["1:0:0"]})
    again = farm.lease()  # the chunk's second lease
    assert again is not None and again["id"] == first["id"]
    dispatch = farm.farm.dispatch
    late = dispatch.chunk_in_memory(  # a small result under it, taken in, not yet committed
        again["id"], again["lease"], chunk_rect(31, 23, 1, 0, 0), _sent_whole(2)
    )
    with monkeypatch.context() as m:  # meanwhile the first lease's node sends it again, a file
        _files_for_results(m)
        assert farm.answer(first).json()["accepted"] is True
    assert _chunk_files(farm, pid) == ["1-0-0.png"] and _held(farm, pid) == 0
    task = dispatch.check_lease(again["id"], again["lease"])
    assert not isinstance(late, Accepted) and len(task.leases) == 2
    with farm.farm.store.db.transaction():
        dispatch.commit_image(late, _sent_whole(2), task)  # the chunk is done: nothing changes
    assert _chunk_files(farm, pid) == ["1-0-0.png"] and _held(farm, pid) == 0


def _sent_whole(value: int) -> bytes:
    return png_bytes(31, 23, value)
