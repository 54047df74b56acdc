"""The node's loop against the real in-process API, with Blender faked (unit level)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from apphelpers import PROBE, InProcessFarm
from blendfarm.errors import BlenderFailed
from blendfarm.node.names import node_name, valid_name
from blendfarm.node.node import Node
from blendfarm.pngio import write_png
from blendfarm.settings import NodeSettings
from blendfarm.tiles import Border, border_pixels


class FakeRenderer:
    """Stands in for Blender: paints each render with its frame number."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.blends: list[Path] = []
        self.closed = False

    def probe(self, blend: Path) -> dict[str, Any]:
        self.blends.append(blend)
        return dict(PROBE)

    def render(self, blend: Path, command: dict[str, Any]) -> Path:
        self.blends.append(blend)
        if self.fail:
            raise BlenderFailed("Error: Build without OpenImageDenoiser", ["Fra:1", "Error: x"])
        w, h = PROBE["resolution_x"], PROBE["resolution_y"]
        rect = border_pixels(Border(*command["border"]), w, h) if command["border"] else None
        width, height = (rect.width, rect.height) if rect else (w, h)
        write_png(Path(command["output"]), np.full((height, width, 3), command["frame"], np.uint8))
        return Path(command["output"])

    def abort(self, polite: bool = False) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def make_node(
    farm: InProcessFarm, tmp_path: Path, renderer: FakeRenderer, name: str = "n1"
) -> Node:
    settings = NodeSettings(
        server="http://testserver", name=name, work_dir=tmp_path / name, token="tok-123"
    )
    return Node(settings, http=farm.client, renderer=renderer, say=lambda _m: None)


def test_a_node_renders_a_project_to_the_end(farm: InProcessFarm, tmp_path: Path) -> None:
    pid = farm.submit({"frames": "1-2", "tiles": "2", "overscan": "2"}).json()["id"]
    renderer = FakeRenderer()
    node = make_node(farm, tmp_path, renderer)
    assert node.run(burst=True) == 1 + 8
    assert renderer.closed
    farm.background.composite_all()
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    # Downloaded once, unpacked, cached by content hash.
    cached = list((tmp_path / "n1" / "projects").iterdir())
    assert len(cached) == 1 and (cached[0] / "scene.blend").exists()
    assert {b.name for b in renderer.blends} == {"scene.blend"}
    assert not list((tmp_path / "n1" / "downloads").iterdir())


def test_max_chunks_stops_the_loop(farm: InProcessFarm, tmp_path: Path) -> None:
    farm.submit({"frames": "1-3"})
    assert make_node(farm, tmp_path, FakeRenderer()).run(max_chunks=2) == 2


def test_blender_errors_reach_the_server(farm: InProcessFarm, tmp_path: Path) -> None:
    pid = farm.submit({"frame": "1"}).json()["id"]
    node = make_node(farm, tmp_path, FakeRenderer(fail=True))
    node.run(burst=True)
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["state"] == "error"  # the only node there is failed it
    assert "OpenImageDenoiser" in project["error"]


def test_a_purged_server_makes_the_node_drop_its_cache(farm: InProcessFarm, tmp_path: Path) -> None:
    farm.submit({"frame": "1"})
    make_node(farm, tmp_path, FakeRenderer()).run(burst=True)
    assert list((tmp_path / "n1" / "projects").iterdir())
    farm.client.post("/api/purge", headers={"X-Blendfarm-Password": "pw-456"})
    make_node(farm, tmp_path, FakeRenderer()).run(burst=True)
    assert not (tmp_path / "n1" / "projects").exists()


def test_names_are_kept_in_the_work_dir(tmp_path: Path) -> None:
    first = node_name(tmp_path)
    assert valid_name(first) and node_name(tmp_path) == first
    assert node_name(tmp_path, "render-01") == "render-01"
    assert node_name(tmp_path) == "render-01"
    assert (tmp_path / "node-name").read_text().strip() == "render-01"


def test_the_project_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    import os

    from blendfarm.node.projects import trim_cache

    for i in range(5):
        folder = tmp_path / f"p{i}"
        folder.mkdir()
        (folder / ".complete").touch()
        os.utime(folder / ".complete", (1000 + i, 1000 + i))
    (tmp_path / ".p9.tmp").mkdir()  # an unpack in progress is left alone
    gone = trim_cache(tmp_path, keep=2)
    assert sorted(p.name for p in gone) == ["p0", "p1", "p2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p9.tmp", "p3", "p4"]


def test_a_working_node_takes_each_next_chunk_with_its_result(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = farm.submit({"frames": "1-3", "tiles": "2"}).json()["id"]
    asked: list[str] = []
    farm.client.event_hooks["request"].append(lambda req: asked.append(req.url.path))
    node = make_node(farm, tmp_path, FakeRenderer())
    worker = threading.Thread(target=node.run, daemon=True)  # no count: it works on and on
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if farm.client.get(f"/api/projects/{pid}").json()["chunks_done"] == 12:
            break
        time.sleep(0.05)
    node.stop()
    worker.join(60)
    assert not worker.is_alive()
    results = [path for path in asked if path.endswith("/result")]
    leases = [path for path in asked if path.endswith("/lease")]
    assert len(results) == 12
    # The probe and the first chunk are leased; every later chunk came with a result's
    # answer; the last answer had nothing more, so the node long-polls once more.
    assert len(leases) <= 3, leases
    # Nor a heartbeat after each of them: at most one a second as tasks end (and the
    # periodic one, every 10 s, does not come round in this run).
    beats = [path for path in asked if path.endswith("/heartbeat")]
    assert len(beats) <= 2, beats
    farm.background.composite_all()
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"


def test_a_counted_run_leases_every_task_itself(farm: InProcessFarm, tmp_path: Path) -> None:
    farm.submit({"frames": "1-3"})
    asked: list[str] = []
    farm.client.event_hooks["request"].append(lambda req: asked.append(str(req.url)))
    assert make_node(farm, tmp_path, FakeRenderer()).run(max_chunks=3) == 3
    assert sum(url.split("?")[0].endswith("/lease") for url in asked) == 3
    assert not any("next=" in url for url in asked)  # nothing leased it would not do
