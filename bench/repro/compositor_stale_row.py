"""Repro: the compositor stitches with a project row read before the probe landed.

    /work/main/.venv/bin/python bench/repro/compositor_stale_row.py

`Background.composite_all` reads every project row once, then composites them one by one.
When a project's probe result arrives in between (and a frame's chunks are done by the time
its turn comes; with many nodes that takes milliseconds), `composite` runs with
width/height None from the stale row: `chunk_rect(None, None, ...)` raises TypeError and
`composite_all` puts the project in error for good ("compositing failed: '<' not supported
between instances of 'NoneType' and 'int'"). bench/load.py hits this in about one run of
three (200 nodes, 20 projects). This script replays the interleaving in-process, step by step.
Exit 1 while the bug is there, 0 once it is fixed.
"""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from blendfarm.server.app import build_farm
from blendfarm.server.compositing import Background
from blendfarm.server.validate import parse_submission
from blendfarm.settings import Settings

PROBE = {
    "resolution_x": 64,
    "resolution_y": 48,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": 2,
    "fps": 24,
    "fps_base": 1.0,
}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        farm = build_farm(Settings(data=Path(tmp) / "data", token="t", password="p"))
        upload = farm.data.temp_file()
        with zipfile.ZipFile(upload, "w") as zf:
            zf.writestr("scene.blend", b"BLENDER-v304" + bytes(64))
        pid = farm.submit(upload, "p.zip", parse_submission({"tiles": "1"}, 64))["id"]
        probe = farm.lease("node-a")  # the project is now "rendering", width still None
        assert probe is not None
        # 1. the compositor's pass starts: it reads the rows of every project
        rows = [r for r in farm.store.projects() if r["id"] == pid]
        # 2. meanwhile the probe lands and a node finishes frame 1
        farm.probe_result(probe["id"], probe["lease"], PROBE)
        chunk = farm.lease("node-a")
        assert chunk is not None
        png = farm.data.temp_file()
        buf = io.BytesIO()
        Image.new("RGBA", (64, 48)).save(buf, "PNG")
        png.write_bytes(buf.getvalue())
        farm.chunk_result(chunk["id"], chunk["lease"], png)
        # 3. the pass reaches this project, with the row it read in step 1
        background = Background(farm)
        for row in rows:  # what composite_all does with each row, minus its error handling
            try:
                background.composite(row)
            except Exception as exc:
                print(f"BUG: composite() on the stale row raised {type(exc).__name__}: {exc}")
                print("composite_all would now put the project in error for good")
                return 1
        state = farm.project_view(pid)["state"]
        print(f"no error; project {pid} is {state}")
        farm.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
