"""Repro: a heartbeat answer that names the task just finished kills the node's next render.

    /work/main/.venv/bin/python bench/repro/heartbeat_cancel_race.py

The heartbeat thread (`Node.heartbeat`) snapshots `self._current` (task A) and posts it.
If A's result reaches the server first, `renew` no longer finds A rendering and answers
`"cancel": [A]`. By the time that answer is read, the main thread may already render task B;
`heartbeat` still compares against its snapshot A, so it sets `_lost` and aborts the
renderer: B's Blender is killed, `run_task` turns that into `Stopped`, and `Node.run` returns
(the node leaves; B stays leased to it until the lease runs out). Between two chunks the
same abort silently throws the warm Blender session away.

This runs a real `blendfarm serve` and the real `Node` with a fake renderer (a 20 ms
"render") and a 10 ms heartbeat to make the window frequent; the production heartbeat is
node_timeout/3 = 20 s, so the race is rarer there but the same. bench/load.py counts such
stale cancels ("stale cancels" in its report). Exit 1 when Blender was aborted although no
lease ran out (and says when a node stopped early).
"""

from __future__ import annotations

import io
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import TOKEN, Server  # noqa: E402

from blendfarm.errors import BlenderFailed  # noqa: E402
from blendfarm.node.node import Node  # noqa: E402
from blendfarm.settings import NodeSettings  # noqa: E402

FRAMES = 200


class FakeRenderer:
    """Answers probes at once and 'renders' for 20 ms; abort() interrupts a render."""

    def __init__(self) -> None:
        self.aborted = threading.Event()
        self.aborts = 0

    def probe(self, blend: Path) -> dict[str, Any]:
        return {
            "resolution_x": 64,
            "resolution_y": 48,
            "resolution_percentage": 100,
            "frame_start": 1,
            "frame_end": FRAMES,
            "fps": 24,
            "fps_base": 1.0,
        }

    def render(self, blend: Path, command: dict[str, Any]) -> Path:
        self.aborted.clear()
        end = time.monotonic() + 0.02
        while time.monotonic() < end:
            if self.aborted.is_set():
                raise BlenderFailed("Blender was killed", [])
            time.sleep(0.002)
        Image.new("RGBA", (64, 48)).save(command["output"], "PNG")
        return Path(command["output"])

    def abort(self) -> None:
        self.aborts += 1
        self.aborted.set()

    def close(self) -> None:
        pass


def attempt(tmp: Path) -> tuple[int, int, dict[str, Any]]:
    with Server(tmp / "data", tmp / "server.log") as server:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("scene.blend", b"BLENDER-v304" + bytes(64))
        resp = httpx.post(f"{server.url}/api/projects", files={"file": ("p.zip", buf.getvalue())})
        pid = resp.json()["id"]
        renderer = FakeRenderer()
        settings = NodeSettings(server=server.url, token=TOKEN, work_dir=tmp / "work", name="n1")
        node = Node(settings, renderer=renderer, say=lambda msg: None)
        node.blender_version = "fake"
        register = node.register

        def register_fast_beats() -> None:
            register()
            node.heartbeat_every = 0.01

        node.register = register_fast_beats  # type: ignore[method-assign]
        handled = node.run(max_chunks=FRAMES + 10, burst=True)
        project = httpx.get(f"{server.url}/api/projects/{pid}").json()
    return handled, renderer.aborts, project


def main() -> int:
    early = 0
    total_aborts = 0
    for i in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            handled, aborts, p = attempt(Path(tmp))
        stopped = p["chunks_done"] < p["chunks_total"]
        early += stopped
        total_aborts += aborts
        print(
            f"run {i + 1}: the node handled {handled} tasks, aborted Blender {aborts} times; "
            f"project {p['state']}: {p['chunks_done']}/{p['chunks_total']} chunks done, "
            f"{p['chunks_rendering']} still leased{' <- node stopped early' if stopped else ''}"
        )
    print(
        f"{early} of 5 runs: the node quit with work left; {total_aborts} aborts of Blender "
        "in all, although no lease ever ran out (each one kills a render or a warm session)"
    )
    return 1 if early or total_aborts else 0


if __name__ == "__main__":
    sys.exit(main())
