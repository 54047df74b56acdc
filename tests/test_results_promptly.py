"""Results as the last pixel lands: a frame is stitched when its last chunk is accepted, and a
project finished with its last frame, without waiting for a look round the farm."""

from __future__ import annotations

import time
from pathlib import Path

from apphelpers import ADMIN, InProcessFarm
from blendfarm.server.services import Background


def started(farm: InProcessFarm, data: dict[str, str]) -> tuple[str, list[dict]]:
    """Submit, answer the probe, and lease every chunk; (project id, chunk tasks)."""
    resp = farm.submit(data)
    assert resp.status_code == 201, resp.text
    probe = farm.lease()
    assert probe is not None and probe["kind"] == "probe"
    assert farm.answer(probe).status_code == 200
    chunks = []
    while (task := farm.lease()) is not None:
        chunks.append(task)
    return resp.json()["id"], chunks


def project(farm: InProcessFarm, pid: str) -> dict:
    return farm.client.get(f"/api/projects/{pid}").json()


def test_the_frames_whose_last_chunk_landed_are_stitched_and_the_project_finished(
    tmp_path: Path,
) -> None:
    farm = InProcessFarm(tmp_path)
    background = Background(farm.farm)  # not started: its passes are run here, one by one
    pid, chunks = started(farm, {"tiles": "2"})  # frames 1-2, 2x2 chunks each
    first, second = [c for c in chunks if c["frame"] == 1], [c for c in chunks if c["frame"] == 2]
    for task in first[:-1] + second:
        assert farm.answer(task).json()["accepted"]
    background.composite_ready()
    assert project(farm, pid)["frames_done"] == 1  # frame 2 is whole, frame 1 is not
    assert farm.answer(first[-1]).json()["accepted"]
    background.composite_ready()  # only frame 1 landed: it is stitched, the project finished
    view = project(farm, pid)
    assert (view["state"], view["frames_done"]) == ("done", 2)
    assert farm.client.get(f"/api/projects/{pid}/result").status_code == 200


def test_a_chunk_landing_for_a_cancelled_project_stitches_nothing(tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path)
    background = Background(farm.farm)
    pid, chunks = started(farm, {"frame": "1", "tiles": "2"})
    assert farm.client.post(f"/api/projects/{pid}/cancel", headers=ADMIN).is_success
    for task in chunks:  # late results of the cancelled leases are still taken
        assert farm.answer(task).status_code == 200
    background.composite_ready()
    view = project(farm, pid)
    assert (view["state"], view["frames_done"]) == ("cancelled", 0)


def test_the_compositor_thread_wakes_for_a_landing_frame_without_its_periodic_look(
    tmp_path: Path,
) -> None:
    farm = InProcessFarm(tmp_path)
    background = Background(farm.farm, interval=3600.0)  # its only look is at start
    background.start()
    try:
        pid, chunks = started(farm, {"frame": "1", "tiles": "2"})
        for task in chunks:
            assert farm.answer(task).json()["accepted"]
        deadline = time.monotonic() + 60  # generous: the machine may be busy
        while project(farm, pid)["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert project(farm, pid)["state"] == "done"
    finally:
        background.stop()


def test_a_project_with_every_chunk_in_is_stitched_before_frames_of_one_still_rendering(
    tmp_path: Path,
) -> None:
    farm = InProcessFarm(tmp_path)
    background = Background(farm.farm)
    long_pid, long_chunks = started(farm, {"frames": "1-2"})  # frames 1 and 2, one chunk each
    assert farm.answer(long_chunks[0]).json()["accepted"]  # frame 1 in; frame 2 renders on
    still_pid, still_chunks = started(farm, {"frame": "1", "title": "still"})
    assert farm.answer(still_chunks[0]).json()["accepted"]  # the still is whole
    order: list[str] = []
    composite = farm.farm.compositor.composite
    farm.farm.compositor.composite = lambda row, frames=None: (  # type: ignore[method-assign]
        order.append(row.id),
        composite(row, frames),
    )[1]
    background.composite_ready()
    assert list(dict.fromkeys(order)) == [still_pid, long_pid]  # landed second, stitched first
    assert project(farm, still_pid)["state"] == "done"
    assert project(farm, long_pid)["frames_done"] == 1
    farm.client.close()
    farm.farm.close()
