"""`blendfarm demo` on a one-node farm: Blender makes the scene, a tiled still and a short
animation are submitted, both finish, and the command says where to watch them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from blendfarm.demo import JOBS, SCENE, scene_command
from helpers import FarmProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_demo_jobs_are_a_tiled_still_and_a_short_animation() -> None:
    still, animation = JOBS
    assert still.frame == SCENE["start"] and still.tiles == 2 and still.overscan > 0
    assert animation.frames == f"{SCENE['start']}-{SCENE['end']}" and animation.tiles == 1
    command = scene_command("/usr/bin/blender", "project", Path("/t/scene.blend"), width=9)
    assert command[:3] == ["/usr/bin/blender", "-b", "--factory-startup"]
    assert command[-3:] == ["project", "/t/scene.blend", "width=9"]


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[FarmProcesses]:
    farm = FarmProcesses(tmp_path)
    farm.start_server()
    farm.start_node("solo")
    try:
        yield farm
    finally:
        farm.close()


def test_the_demo_renders_on_a_one_node_farm(
    one_node: FarmProcesses, blender: str, tmp_path: Path
) -> None:
    farm = one_node
    out = farm.cli(
        "demo", "--server", farm.url, "--blender", blender, "-o", str(tmp_path / "demo"),
        timeout=300,
    )  # fmt: skip
    ids = re.findall(r"submitted blendfarm demo: (?:tiled still|animation) as (\w+)", out.stdout)
    assert len(ids) == 2, out.stdout + out.stderr
    assert f"{farm.url.rsplit(':', 1)[0]}:8080/" in out.stdout
    assert f"blendfarm status --watch --server {farm.url}" in out.stdout
    assert (tmp_path / "demo" / "scene.blend").exists()
    assert (tmp_path / "demo" / "lib" / "lib.blend").exists()

    still = farm.wait_state(ids[0], {"done", "error"}, timeout=600)
    assert still["state"] == "done", still
    assert (still["width"], still["height"]) == (SCENE["width"], SCENE["height"])
    assert still["tiles"] == 2 and still["chunks_total"] == 4 and not still["animation"]
    assert still["warnings"] == []  # the texture and the library travelled with the scene
    animation = farm.wait_state(ids[1], {"done", "error"}, timeout=600)
    assert animation["state"] == "done", animation
    assert animation["animation"] and animation["frames_done"] == SCENE["end"]
    assert animation["result_type"] == "video/mp4"


def test_the_demo_says_in_one_line_when_no_farm_answers(blender: str, tmp_path: Path) -> None:
    farm = FarmProcesses(tmp_path)  # never started
    proc = farm.cli("demo", "--server", farm.url, "--blender", blender, check=False)
    farm.client.close()
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: cannot reach the server at {farm.url}")
    assert len(proc.stderr.strip().splitlines()) == 1
