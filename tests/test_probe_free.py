"""No probe barrier: a project whose scene the server reads has its chunks at submit, and
every node can start while one node probes; the probe's warnings still arrive, and its plan
wins when it disagrees before anything is rendered.

The in-process tests submit a real project made by Blender (the `project_zip` fixture:
203x157, frames 1-4) and play the nodes; one test runs real processes and real Blender.
"""

from __future__ import annotations

import gzip
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from apphelpers import NODE, InProcessFarm, fake_project_zip
from blendfarm.server.chunk_tasks import make_chunks
from blendfarm.server.rows import NewProject
from blendfarm.server.store import Store
from blendfarm.server.validate import Plan
from blendfarm.states import TaskKind, TaskState
from helpers import FarmProcesses, make_project, zip_folder

# What Blender's probe reports for the `project_zip` scene.
SCENE = {
    "resolution_x": 203,
    "resolution_y": 157,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": 4,
    "fps": 24,
    "fps_base": 1.0,
    "camera": True,
    "engine": "CYCLES",
    "engine_available": True,
}


@pytest.fixture(scope="module")
def scene_zip(project_zip: Path) -> bytes:
    return project_zip.read_bytes()


def submitted(farm: InProcessFarm, content: bytes, **form: str) -> dict[str, Any]:
    if content.startswith(b"PK") and b"lib/lib.blend" in content:
        form.setdefault("blend", "scene.blend")
    resp = farm.submit(dict(form), content)
    assert resp.status_code == 201, resp.text
    project: dict[str, Any] = resp.json()
    return project


def tasks(farm: InProcessFarm, pid: str, kind: TaskKind = TaskKind.CHUNK) -> list[Any]:
    return farm.farm.store.tasks.of_project(pid, kind)


def view(farm: InProcessFarm, pid: str) -> dict[str, Any]:
    project: dict[str, Any] = farm.client.get(f"/api/projects/{pid}").json()
    return project


def ready(farm: InProcessFarm, *nodes: str) -> None:
    for node in nodes:
        farm.register(node)


def probe_answer(farm: InProcessFarm, task: dict[str, Any], **found: Any) -> Any:
    resp = farm.answer(task, {**SCENE, **found})
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- the plan at submit -------------------------------------------------------------------------


def test_chunks_of_a_readable_scene_exist_right_after_submit(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    project = submitted(farm, scene_zip, tiles="2")
    assert (project["width"], project["height"]) == (203, 157)
    assert (project["frame_start"], project["frame_end"], project["animation"]) == (1, 4, True)
    assert project["chunks_total"] == 4 * 2 * 2 and project["chunks_done"] == 0
    assert project["state"] == "queued" and project["fps"] == 24
    chunks = tasks(farm, project["id"])
    assert {(t.frame, t.row, t.col) for t in chunks} == {
        (f, r, c) for f in range(1, 5) for r in range(2) for c in range(2)
    }
    (probe,) = tasks(farm, project["id"], TaskKind.PROBE)
    assert probe.state is TaskState.QUEUED and probe.rank < min(t.rank for t in chunks)


def test_frames_given_at_submit_are_kept_and_a_paused_project_has_its_chunks_too(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    still = submitted(farm, scene_zip, frame="3")
    assert (still["frame_start"], still["frame_end"], still["animation"]) == (3, 3, False)
    assert [t.frame for t in tasks(farm, still["id"])] == [3]
    paused = submitted(farm, scene_zip, frames="2-3", paused="true")
    assert paused["state"] == "paused" and paused["chunks_total"] == 2


def test_a_second_node_takes_a_chunk_while_the_probe_runs(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    pid = submitted(farm, scene_zip, tiles="2")["id"]
    ready(farm, "prober", "other")
    probe = farm.lease("prober")
    assert probe is not None and probe["kind"] == "probe"
    chunk = farm.lease("other")
    assert chunk is not None and chunk["kind"] == "chunk" and chunk["project"] == pid
    assert (chunk["width"], chunk["height"]) == (203, 157)
    assert farm.answer(chunk).json()["accepted"] is True
    assert probe_answer(farm, probe)["accepted"] is True
    project = view(farm, pid)
    assert project["chunks_done"] == 1 and project["chunks_total"] == 16
    assert project["state"] == "rendering"
    while (task := farm.lease("other")) is not None:
        assert farm.answer(task).status_code == 200
    farm.background.composite_all()
    assert view(farm, pid)["state"] == "done"


def test_the_probes_warnings_still_arrive(farm: InProcessFarm, scene_zip: bytes) -> None:
    pid = submitted(farm, scene_zip, tiles="2", finish="never")["id"]
    ready(farm, "n1", "n2")
    probe = farm.lease("n1")
    assert probe is not None and probe["kind"] == "probe"
    assert view(farm, pid)["warnings"] == []
    chunk = farm.lease("n2")
    assert chunk is not None and farm.answer(chunk).status_code == 200
    probe_answer(
        farm,
        probe,
        compositor=True,
        denoising=True,
        missing=["//textures/gone.png"],
        scripts_blocked=["1 Python driver was not evaluated"],
    )
    warnings = view(farm, pid)["warnings"]
    assert any("compositor nodes" in w for w in warnings)
    assert any("denoising runs per chunk" in w for w in warnings)
    assert any("//textures/gone.png" in w for w in warnings)
    assert any("Python driver" in w for w in warnings)
    assert view(farm, pid)["chunks_total"] == 16  # the same plan: nothing made twice


def test_a_probe_that_finds_the_scene_unrenderable_puts_the_project_in_error(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    pid = submitted(farm, scene_zip)["id"]
    ready(farm, "n1")
    probe = farm.lease("n1")
    assert probe is not None
    probe_answer(farm, probe, engine="FANCY", engine_available=False)
    project = view(farm, pid)
    assert project["state"] == "error" and "FANCY" in project["error"]
    assert farm.lease("n1") is None


def test_a_project_rendered_while_its_probe_runs_finishes_with_the_probes_warnings(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    pid = submitted(farm, scene_zip, frame="1", tiles="2")["id"]
    ready(farm, "slow", "fast")
    probe = farm.lease("slow")
    assert probe is not None
    assert farm.run_all("fast") == 4
    project = view(farm, pid)
    assert project["chunks_done"] == 4 and project["state"] == "rendering"  # the probe runs
    probe_answer(farm, probe, missing=["//textures/gone.png"])
    farm.background.composite_all()
    project = view(farm, pid)
    assert project["state"] == "done" and any("gone.png" in w for w in project["warnings"])


def test_a_late_probe_of_a_done_project_leaves_it_done_with_a_warning(
    farm: InProcessFarm, scene_zip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prober's lease ran out, the project was rendered and done without it; its result
    comes after all and finds the scene unrenderable on that node: the project stays done."""
    pid = submitted(farm, scene_zip, frame="1", tiles="2")["id"]
    ready(farm, "slow", "fast")
    late = farm.lease("slow")
    assert late is not None
    db = farm.farm.store.db
    monkeypatch.setattr(db, "clock", lambda: time.time() + 3600)
    assert late["id"] in farm.farm.store.tasks.expire_leases()
    again = farm.lease("fast")
    assert again is not None and again["id"] == late["id"]
    failed = farm.client.post(
        f"/api/tasks/{again['id']}/fail",
        params={"lease": again["lease"]},
        headers=NODE,
        json={"node": "fast", "message": "Blender crashed", "log": []},
    )
    assert failed.status_code == 200, failed.text
    assert farm.run_all("fast") == 4
    assert view(farm, pid)["state"] == "done"
    probe_answer(farm, late, engine="FANCY", engine_available=False)
    project = view(farm, pid)
    assert project["state"] == "done" and any("FANCY" in w for w in project["warnings"])


# -- the probe disagrees --------------------------------------------------------------------------


def test_the_probe_replans_when_it_disagrees_and_nothing_rendered(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    pid = submitted(farm, scene_zip, tiles="2")["id"]
    ready(farm, "prober", "other")
    probe = farm.lease("prober")
    stale = farm.lease("other")  # rendering by the file's plan when the probe comes in
    assert probe is not None and stale is not None and stale["kind"] == "chunk"
    probe_answer(farm, probe, resolution_percentage=50, frame_end=6)  # a script changed them
    project = view(farm, pid)
    assert (project["width"], project["height"]) == (101, 78)
    assert (project["frame_start"], project["frame_end"]) == (1, 6)
    assert project["chunks_total"] == 6 * 4 and project["chunks_rendering"] == 0
    assert not any("sees the scene" in w for w in project["warnings"])
    beat = farm.client.post(
        "/api/nodes/other/heartbeat", headers=NODE, json={"tasks": [stale["id"]], "log": []}
    )
    assert beat.json()["cancel"] == [stale["id"]]  # its node stops rendering it
    late = farm.answer(stale)  # a late result of the old plan is not taken
    assert late.status_code in (404, 409) and view(farm, pid)["chunks_done"] == 0
    assert farm.run_all("other") == 24
    assert view(farm, pid)["state"] == "done"


def test_frames_given_at_submit_are_kept_when_the_probe_sees_another_range(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    pid = submitted(farm, scene_zip, frames="2-3")["id"]
    ready(farm, "n1")
    probe = farm.lease("n1")
    assert probe is not None
    before = [t.id for t in tasks(farm, pid)]
    probe_answer(farm, probe, frame_start=10, frame_end=20)
    project = view(farm, pid)
    assert (project["frame_start"], project["frame_end"]) == (2, 3)
    assert [t.id for t in tasks(farm, pid)] == before  # the same plan: the same chunks


def test_the_probe_keeps_the_read_plan_and_warns_once_chunks_are_rendered(
    farm: InProcessFarm, scene_zip: bytes
) -> None:
    pid = submitted(farm, scene_zip, tiles="2", finish="never")["id"]
    ready(farm, "prober", "other")
    probe = farm.lease("prober")
    chunk = farm.lease("other")
    assert probe is not None and chunk is not None
    assert farm.answer(chunk).status_code == 200
    probe_answer(farm, probe, resolution_x=400, compositor=True)
    project = view(farm, pid)
    assert (project["width"], project["height"]) == (203, 157)
    assert project["chunks_done"] == 1 and project["chunks_total"] == 16
    assert any("sees the scene as 400x157" in w for w in project["warnings"])
    assert any("compositor nodes" in w for w in project["warnings"])


# -- the fallback -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        fake_project_zip(),  # a header without a scene: nothing to read
        fake_project_zip(header=gzip.compress(b"BLENDER-v304" + b"\xff" * 200)),  # damaged
    ],
    ids=["no-scene", "damaged"],
)
def test_an_unreadable_scene_falls_back_to_the_probe(farm: InProcessFarm, content: bytes) -> None:
    project = submitted(farm, content, tiles="2")
    pid = project["id"]
    assert project["width"] is None and project["chunks_total"] == 0
    assert tasks(farm, pid) == []
    ready(farm, "n1", "n2")
    probe = farm.lease("n1")
    assert probe is not None and probe["kind"] == "probe"
    assert farm.lease("n2") is None  # nothing else until the probe is in, as before
    assert farm.farm.store.projects.get(pid).scene is None
    probe_answer(farm, probe, resolution_x=31, resolution_y=23, frame_end=2)
    assert view(farm, pid)["chunks_total"] == 2 * 4
    assert not list((farm.settings.data / "tmp").iterdir())  # no scratch copy left behind


def test_a_scene_the_farm_refuses_is_left_to_the_probe_to_explain(
    tmp_path: Path, scene_zip: bytes
) -> None:
    """The scene's 4 frames in 8x8 chunks are more than this farm takes: the probe says so,
    as before."""
    farm = InProcessFarm(tmp_path, max_chunks=100)
    try:
        pid = submitted(farm, scene_zip, tiles="8")["id"]
        assert view(farm, pid)["chunks_total"] == 0
        ready(farm, "n1")
        probe = farm.lease("n1")
        assert probe is not None
        probe_answer(farm, probe)
        project = view(farm, pid)
        assert project["state"] == "error" and "more than this farm takes" in project["error"]
    finally:
        farm.client.close()
        farm.farm.close()


def test_a_lone_blend_upload_is_read_too(farm: InProcessFarm, scene_zip: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(scene_zip)) as zf:
        blend = zf.read("scene.blend")
    project = submitted(farm, blend)  # (its library is missing: the probe will say so)
    assert project["width"] == 203 and project["chunks_total"] == 4


# -- a submit cut off while its chunks were made ---------------------------------------------------


def test_a_submit_cut_off_while_making_chunks_is_completed_by_the_probe(tmp_path: Path) -> None:
    now = [1000.0]
    store = Store(tmp_path / "farm.db", clock=lambda: now[0])
    new = NewProject(
        title="t",
        blend="scene.blend",
        sha256="0" * 64,
        archive_size=1,
        animation=True,
        frame_start=None,
        frame_end=None,
        tiles=1,
        overscan=0,
    )
    plan = Plan(20, 10, list(range(1, 11)), True, 24.0, 1.0, [])
    pid, probe_id = store.plans.create(new, plan, SCENE, hold=30)
    assert make_chunks(store.db, probe_id, pid, plan.frames[:3])  # then the server stopped
    assert store.tasks.lease("n1", 60, 3) is not None  # a node renders the first chunk
    assert store.tasks.expire_leases() == []
    now[0] += 31  # the server's hold on the probe runs out like any lease
    assert probe_id in store.tasks.expire_leases()
    store.tasks.lease("n1", 60, 3)
    assert store.tasks.get(probe_id).state is TaskState.RENDERING  # the probe goes first
    assert store.tasks.finish_probe(probe_id, plan, SCENE)
    assert [t.frame for t in store.tasks.of_project(pid)] == plan.frames
    store.close()


# -- real processes, real Blender -----------------------------------------------------------------


@pytest.mark.e2e
def test_a_real_farm_starts_a_read_scene_at_once_and_the_probe_warns(
    live_farm: FarmProcesses, blender: str, tmp_path: Path
) -> None:
    folder = tmp_path / "p"
    make_project(blender, folder, width=64, height=48, end=2, compositor=1)
    archive = zip_folder(folder, tmp_path / "p.zip")
    pid = live_farm.submit(archive, "--tiles", "2", "--finish", "never")
    project = live_farm.project(pid)  # no node is running yet
    assert (project["width"], project["height"], project["chunks_total"]) == (64, 48, 8)
    live_farm.start_node("solo")
    done = live_farm.wait_state(pid, {"done", "error"})
    assert done["state"] == "done", live_farm.logs()
    assert any("compositor nodes" in w for w in done["warnings"])
    assert "probed" in live_farm.log("node-solo")
