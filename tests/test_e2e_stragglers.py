"""A straggling chunk with a real server, two real nodes and real Blender: the slow node's
chunk is copied to the idle node, the copy's result wins and the slow node is told at once
(not by its heartbeat, 20 s away) to stop its Blender.

"Slow" is made certain rather than likely: the slow node's Blender is frozen (SIGSTOP) in
the middle of the project, as a machine that swaps or throttles would be, while the node
itself goes on beating. How much a copy gains is measured by the bench, not here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from helpers import make_project, running_farm, zip_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def still_zip(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frame of 121x91 at 300 samples: a 3x3 chunk renders in about a second."""
    folder = tmp_path_factory.mktemp("still")
    make_project(blender, folder, width=121, height=91, start=1, end=1, samples=300)
    return zip_folder(folder, tmp_path_factory.mktemp("zip") / "still.zip")


def test_a_slow_nodes_chunk_is_copied_and_the_slow_node_stops_at_once(
    tmp_path: Path, still_zip: Path
) -> None:
    frozen: list[int] = []
    with running_farm(tmp_path, node_timeout=60.0) as farm:  # a heartbeat every 20 s
        slow = farm.start_node("slow", "--threads", "1")
        pid = farm.submit(still_zip, "--frame", "1", "--tiles", "3")
        try:
            farm.wait_node_rendering("slow")
            blender = farm.children(slow)
            assert blender, farm.logs()
            for child in blender:
                os.killpg(child, signal.SIGSTOP)  # its Blender is its own process group
                frozen.append(child)
            farm.start_node("fast")
            done = farm.wait_state(pid, {"done"})
            assert done["chunks_done"] == 9
            deadline = time.monotonic() + 30
            while "was finished by another node: stopping Blender" not in farm.log("node-slow"):
                assert time.monotonic() < deadline, f"the slow node was not told\n{farm.logs()}"
                time.sleep(0.2)
            assert "lost the lease" not in farm.log("node-slow")  # told by the stop, not a beat
            assert "straggles: a copy renders on fast" in farm.log("serve")
            deadline = time.monotonic() + 30
            while set(frozen) & set(farm.children(slow)):  # killed and reaped by its node
                assert time.monotonic() < deadline, (
                    f"the frozen Blender is still there\n{farm.logs()}"
                )
                time.sleep(0.2)
            nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
            assert nodes["fast"]["chunks_done"] >= 1
            assert nodes["slow"]["current"] is None
        finally:
            for child in frozen:  # never leave a stopped process behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child, signal.SIGCONT)
