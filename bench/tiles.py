"""The cost of cutting a still into chunks: 1×1, 2×2 and 4×4 on one node vs plain Blender.

    .venv/bin/python bench/tiles.py [--blender bpy] [--width 240 --height 180 --samples 64]
                                    [--rounds 2]

One `blendfarm node` (all cores, warm sessions: the default) renders a warm-up still of the
test scene first (not measured), then, each round, plain `blender -b scene.blend -f 1` and
the farm's 1×1, 2×2 and 4×4 stills, each a new project (submit -> done). Reported: medians,
each against plain Blender, and the cost of one more chunk
((wall N×N - wall 1×1) / (N² - 1)). Writes bench/results/tiles.json (see record.py).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blenders import Blender, make_project, run_timed  # noqa: E402
from common import RESULTS, stop_on_sigterm  # noqa: E402
from farmrun import Farm  # noqa: E402
from record import Record  # noqa: E402

TILINGS = (1, 2, 4)


def measure(blender: Blender, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"blender": blender.version()}
    project = tmp / "project"
    scene = make_project(blender, project, args.width, args.height, args.samples, 1)
    plain: list[float] = []
    walls: dict[int, list[float]] = {n: [] for n in TILINGS}
    with Farm(tmp / "farm") as farm:
        farm.add_node("n1", ["--blender", blender.spec])
        farm.wait_nodes(1)
        warmup = farm.render_project(project, "scene.blend", ["--frame", "1"], args.timeout)
        found["warmup_s"] = warmup["wall_s"]
        for index in range(args.rounds):
            out = str(tmp / f"plain-{index}" / "frame_####")
            wall = run_timed(blender.render_command(scene, out, 0, frame=1), args.timeout)
            plain.append(round(wall, 3))
            print(f"  plain -f 1: {wall:.2f} s", flush=True)
            order = TILINGS if index % 2 == 0 else TILINGS[::-1]
            for tiles in order:
                options = ["--frame", "1", "--tiles", str(tiles), "--title", f"tiles {tiles}"]
                case = farm.render_project(project, "scene.blend", options, args.timeout)
                walls[tiles].append(case["wall_s"])
                print(f"  farm {tiles}x{tiles}: {case['wall_s']:.2f} s", flush=True)
    found["plain_s"] = statistics.median(plain)
    found["plain_runs_s"] = plain
    one = statistics.median(walls[1])
    found["farm"] = {}
    for tiles in TILINGS:
        wall = statistics.median(walls[tiles])
        entry = {
            "chunks": tiles * tiles,
            "wall_s": wall,
            "wall_runs_s": walls[tiles],
            "vs_plain": round(wall / found["plain_s"], 3),
        }
        if tiles > 1:
            entry["per_extra_chunk_s"] = round((wall - one) / (tiles * tiles - 1), 3)
        found["farm"][f"{tiles}x{tiles}"] = entry
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blender", default="bpy", help="bpy or a Blender executable")
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="medians over this many rounds")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per render")
    parser.add_argument("--out", type=Path, default=RESULTS / "tiles.json")
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it (logs, scene)")
    args = parser.parse_args()
    stop_on_sigterm()
    blender = Blender(args.blender)
    config = {
        "blender": blender.spec,
        "width": args.width,
        "height": args.height,
        "samples": args.samples,
        "rounds": args.rounds,
        "tilings": list(TILINGS),
        "node_threads": 0,
    }
    record = Record("tiles", args.out, config)
    try:
        with tempfile.TemporaryDirectory(prefix="blendfarm-tiles-") as tmp_name:
            tmp = args.keep or Path(tmp_name)
            shutil.rmtree(tmp / "farm", ignore_errors=True)
            record.data["figures"] = measure(blender, tmp, args)
    except BaseException as exc:
        record.failed(exc)
        if not isinstance(exc, Exception):
            raise
        print(f"failed: {exc}", file=sys.stderr)
    finally:
        data = record.save(True)
        print(f"written to {args.out}")
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
