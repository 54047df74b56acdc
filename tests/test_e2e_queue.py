"""Cancel and requeue with a real server, real nodes and real Blender: a cancel stops the
render on its node within a heartbeat and keeps what is done; retry finishes it; requeue
renders a frame again and the animation is encoded again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import make_project, running_farm, zip_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def quick_zip(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 frames of 61x47 at 4 samples."""
    folder = tmp_path_factory.mktemp("quick")
    make_project(blender, folder, width=61, height=47, start=1, end=3, samples=4)
    return zip_folder(folder, tmp_path_factory.mktemp("zip") / "quick.zip")


@pytest.fixture(scope="module")
def slow_zip(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frame of 121x91 at 1500 samples: a 2x2 chunk renders for a few seconds."""
    folder = tmp_path_factory.mktemp("slow")
    make_project(blender, folder, width=121, height=91, start=1, end=1, samples=1500)
    return zip_folder(folder, tmp_path_factory.mktemp("zip") / "slow.zip")


def test_cancel_reaches_the_node_keeps_what_is_done_and_retry_finishes(
    tmp_path: Path, slow_zip: Path
) -> None:
    with running_farm(tmp_path, node_timeout=3.0) as farm:  # a heartbeat every second
        farm.start_node("a")
        pid = farm.submit(slow_zip, "--frame", "1", "--tiles", "2")
        deadline = time.monotonic() + 240
        while farm.project(pid)["chunks_done"] < 1:
            assert time.monotonic() < deadline, farm.logs()
            time.sleep(0.2)
        node = farm.wait_node_rendering("a")
        assert node["current"]["project"] == pid
        out = farm.cli("cancel", pid)
        assert f"{pid} is cancelled" in out.stdout
        deadline = time.monotonic() + 20  # a heartbeat (1 s) and Blender's stop, with room
        while "lost the lease on task" not in farm.log("node-a"):
            assert time.monotonic() < deadline, f"the node was not told\n{farm.logs()}"
            time.sleep(0.2)
        cancelled = farm.project(pid)
        assert cancelled["state"] == "cancelled" and cancelled["chunks_rendering"] == 0
        kept = cancelled["chunks_done"]
        assert 1 <= kept < 4
        time.sleep(2)  # the node asks for work a few times meanwhile: it gets none of this
        assert farm.project(pid)["chunks_done"] == kept
        assert f"{pid} is" in farm.cli("retry", pid).stdout
        done = farm.wait_state(pid, {"done"})
        assert done["chunks_done"] == 4 and len(done["frame_times"]) == 1


def test_requeue_renders_a_frame_again_and_remakes_the_video(
    tmp_path: Path, quick_zip: Path
) -> None:
    with running_farm(tmp_path, node_timeout=3.0) as farm:
        farm.start_node("a")
        farm.start_node("b")
        pid = farm.submit(quick_zip, "--frames", "1-3", "--tiles", "2")
        farm.wait_state(pid, {"done"})
        video = tmp_path / "data" / "projects" / pid
        results = sorted(video.glob("result*"))
        assert results, list(video.iterdir())
        before = results[0].stat().st_mtime_ns
        out = farm.cli("requeue", pid, "--frames", "2")
        assert out.stdout.strip() == f"4 chunk(s) of {pid} queued again"
        # Idle nodes wait on the server for work and take the chunks at once: by now the
        # project may be rendering, compositing or even done again. What counts is below.
        assert farm.project(pid)["state"] != "error"
        done = farm.wait_state(pid, {"done"})
        assert done["chunks_done"] == 12 and done["frames_done"] == 3
        assert results[0].stat().st_mtime_ns > before
        out = farm.cli("requeue", pid, "--chunk", "3:1:1")
        assert out.stdout.strip() == f"1 chunk(s) of {pid} queued again"
        assert farm.wait_state(pid, {"done"})["chunks_done"] == 12
