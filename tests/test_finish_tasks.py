"""Raw chunks and finish tasks through the real API and store, with simulated nodes: the
passes are stitched exactly, a finish task is made per frame and its frame becomes the
result; a finish that keeps failing errors the project; damaged passes render again."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apphelpers import NODE, PROBE, InProcessFarm, png_bytes
from blendfarm.exr import read_exr, write_exr
from blendfarm.node.node import Node
from blendfarm.server.finish_store import finish_of
from blendfarm.settings import NodeSettings
from blendfarm.tiles import Border, border_pixels

W, H = PROBE["resolution_x"], PROBE["resolution_y"]


def frame_passes(frame: int) -> dict[str, np.ndarray]:
    """A whole frame's raw passes, different per frame; chunks are cut from it."""
    rng = np.random.default_rng(frame)
    names = [f"ViewLayer.Combined.{c}" for c in "RGBA"]
    names += [f"ViewLayer.Denoising Normal.{c}" for c in "XYZ"]
    return {n: rng.normal(size=(H, W)).astype(np.float32) for n in names}


def raw_bytes(task: dict[str, Any], tmp: Path) -> bytes:
    """The raw chunk a node would send for `task`: its rectangle of the frame's passes."""
    r = task["rect"]
    chans = {n: a[r["y0"] : r["y1"], r["x0"] : r["x1"]] for n, a in frame_passes(1).items()}
    parts = [
        (
            layer,
            {n: a for n, a in chans.items() if n.startswith(layer + ".")},
            {},
        )
        for layer in ("ViewLayer.Combined", "ViewLayer.Denoising Normal")
    ]
    path = tmp / f"{task['id']}.exr"
    write_exr(path, parts)
    return path.read_bytes()


def put(farm: InProcessFarm, task: dict[str, Any], body: bytes, kind: str) -> Any:
    return farm.client.put(
        f"/api/tasks/{task['id']}/result",
        params={"lease": task["lease"], "kind": kind},
        headers=NODE,
        content=body,
    )


def raw_project(farm: InProcessFarm, tmp: Path, finish: str = "auto") -> str:
    """A 2x2 still, probed, every chunk sent raw, the compositor's pass run once."""
    pid = str(farm.submit({"frame": "1", "tiles": "2", "finish": finish}).json()["id"])
    probe = farm.lease()
    assert probe is not None and farm.answer(probe).status_code == 200
    while (task := farm.lease()) is not None:
        assert task["kind"] == "chunk" and task["finish"] == finish
        answer = put(farm, task, raw_bytes(task, tmp), "raw")
        assert answer.status_code == 200 and answer.json()["accepted"], answer.text
    farm.background.composite_all()
    return pid


def state(farm: InProcessFarm, pid: str) -> str:
    return str(farm.client.get(f"/api/projects/{pid}").json()["state"])


def test_raw_chunks_are_stitched_exactly_and_a_finished_frame_becomes_the_result(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = raw_project(farm, tmp_path)
    passes = read_exr(farm.farm.data.passes(pid, 1))
    got = {n: a for chans in passes.pixels for n, a in chans.items()}
    for name, values in frame_passes(1).items():
        assert np.array_equal(got[name], values), name
    assert state(farm, pid) == "rendering"  # its finish task waits for a node
    finish = farm.lease("n2")
    assert finish is not None and finish["kind"] == "finish" and finish["frame"] == 1
    download = farm.client.get(finish["passes_url"], headers=NODE)
    assert download.status_code == 200
    assert download.content == farm.farm.data.passes(pid, 1).read_bytes()
    assert hashlib.sha256(download.content).hexdigest() == finish["passes_sha256"]
    wrong = put(farm, finish, png_bytes(W - 1, H), "final")
    assert wrong.status_code == 400 and "expected" in wrong.json()["error"]["message"]
    assert put(farm, finish, png_bytes(W, H, 3), "final").json()["accepted"]
    assert not put(farm, finish, png_bytes(W, H, 3), "final").json()["accepted"]  # idempotent
    farm.background.composite_all()
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["state"] == "done" and project["chunks_done"] == project["chunks_total"] == 4
    result = farm.client.get(f"/api/projects/{pid}/result")
    assert result.status_code == 200 and result.content == png_bytes(W, H, 3)
    raw_zip = farm.client.get(f"/api/projects/{pid}/raw")
    names = zipfile.ZipFile(io.BytesIO(raw_zip.content)).namelist()
    assert sorted(names) == sorted(f"{pid}-1-{r}-{c}.raw.exr" for r in (0, 1) for c in (0, 1))


def test_the_finish_mode_is_checked_kept_and_sent_to_nodes(farm: InProcessFarm) -> None:
    bad = farm.submit({"frame": "1", "finish": "sometimes"})
    assert bad.status_code == 400 and "finish" in bad.json()["error"]["message"]
    made = farm.submit({"frame": "1", "tiles": "2", "finish": "never"}).json()
    assert made["finish"] == "never"
    assert farm.submit({"frame": "1"}).json()["finish"] == "auto"


def test_a_raw_chunk_that_is_not_an_exr_of_its_size_is_refused(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    farm.submit({"frame": "1", "tiles": "2"})
    probe = farm.lease()
    assert probe is not None and farm.answer(probe).status_code == 200
    task = farm.lease()
    assert task is not None
    refused = put(farm, task, png_bytes(3, 3), "raw")
    assert refused.status_code == 400 and "OpenEXR" in refused.json()["error"]["message"]
    other = dict(task, rect={"x0": 0, "y0": 0, "x1": 2, "y1": 2})
    small = put(farm, task, raw_bytes(other, tmp_path), "raw")
    assert small.status_code == 400 and "expected" in small.json()["error"]["message"]
    finished = put(farm, task, png_bytes(W, H), "final")
    assert finished.status_code == 400 and "not a finish" in finished.json()["error"]["message"]


def test_a_finish_failing_on_every_node_errors_the_project(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = raw_project(farm, tmp_path)
    limit = farm.settings.max_failures
    for i in range(limit):
        node = f"f{i}"
        farm.register(node)
        finish = farm.lease(node)
        assert finish is not None and finish["kind"] == "finish"
        failed = farm.client.post(
            f"/api/tasks/{finish['id']}/fail",
            params={"lease": finish["lease"]},
            headers=NODE,
            json={"node": node, "message": "the compositor broke"},
        )
        assert failed.status_code == 200
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["state"] == "error" and "the compositor broke" in project["error"]


def test_damaged_passes_send_the_frames_chunks_back_to_the_queue(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = raw_project(farm, tmp_path)
    passes = farm.farm.data.passes(pid, 1)
    passes.write_bytes(passes.read_bytes()[:200])  # cut off
    finish = farm.lease("n2")
    assert finish is not None and finish["kind"] == "finish"
    download = farm.client.get(finish["passes_url"], headers=NODE)
    assert download.status_code == 404 and "rendered again" in download.json()["error"]["message"]
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["chunks_done"] == 0 and project["state"] == "queued"
    # The finish task went with them: its node is told to stop at its next heartbeat.
    beat = farm.client.post(
        "/api/nodes/n2/heartbeat", headers=NODE, json={"tasks": [finish["id"]]}
    ).json()
    assert beat["cancel"] == [finish["id"]]
    again = [farm.lease("n3") for _ in range(4)]
    assert [t["kind"] for t in again if t] == ["chunk"] * 4


def test_requeueing_a_finished_raw_frame_renders_its_chunks_and_finish_again(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = raw_project(farm, tmp_path)
    finish = farm.lease()
    assert finish is not None
    assert put(farm, finish, png_bytes(W, H, 3), "final").json()["accepted"]
    farm.background.composite_all()
    assert state(farm, pid) == "done"
    store = farm.farm.store
    store.tasks.requeue(pid, [(1, 0, 0)])
    with store.db.read() as db:
        assert finish_of(db, pid, 1) is None
    task = farm.lease()
    assert task is not None and (task["kind"], task["row"], task["col"]) == ("chunk", 0, 0)
    assert put(farm, task, raw_bytes(task, tmp_path), "raw").json()["accepted"]
    farm.background.composite_all()
    again = farm.lease()
    assert again is not None and again["kind"] == "finish" and again["lease"] != finish["lease"]


@pytest.mark.parametrize("finish", ["never", "auto", "always"])
def test_png_chunks_are_stitched_as_before_whatever_the_mode(
    farm: InProcessFarm, finish: str
) -> None:
    pid = farm.submit({"frame": "1", "tiles": "2", "finish": finish}).json()["id"]
    farm.run_all()
    assert state(farm, pid) == "done"


class RawBlender:
    """Stands in for Blender on a node: raw chunks of a known frame, and a finish that
    checks it got that frame's passes whole and paints the final frame."""

    def __init__(self) -> None:
        self.finished: list[int] = []

    def probe(self, blend: Path) -> dict[str, Any]:
        return dict(PROBE)

    def render(self, blend: Path, command: dict[str, Any]) -> Path:
        assert command["tiles"] == 2 and command["finish"] == "auto"
        r = border_pixels(Border(*command["border"]), W, H)
        out = Path(command["output"]).with_suffix(".raw.exr")  # as blender_output names it
        parts = {n: a[r.y0 : r.y1, r.x0 : r.x1] for n, a in frame_passes(command["frame"]).items()}
        write_exr(out, [("ViewLayer.Combined", parts, {})])
        return out

    def finish(self, blend: Path, command: dict[str, Any]) -> Path:
        got = read_exr(Path(command["passes"]))
        for name, values in frame_passes(command["frame"]).items():
            assert np.array_equal(got.pixels[0][name], values)
        self.finished.append(command["frame"])
        out = Path(command["output"])
        out.write_bytes(png_bytes(W, H, command["frame"]))
        return out

    def abort(self, polite: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_node_sends_raw_chunks_and_finishes_their_frames(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = farm.submit({"frames": "1-2", "tiles": "2"}).json()["id"]
    blender = RawBlender()
    settings = NodeSettings(
        server="http://testserver", name="n1", work_dir=tmp_path / "n1", token="tok-123"
    )
    node = Node(settings, http=farm.client, renderer=blender, say=lambda _m: None)
    assert node.run(burst=True) == 1 + 8  # the probe and the raw chunks
    farm.background.composite_all()
    assert state(farm, pid) == "rendering"
    node = Node(settings, http=farm.client, renderer=blender, say=lambda _m: None)
    node.run(burst=True)  # the frames' finish tasks
    assert sorted(blender.finished) == [1, 2]
    farm.background.composite_all()
    assert state(farm, pid) == "done"
    assert not list((tmp_path / "n1" / "out").iterdir())  # no scratch file left behind
