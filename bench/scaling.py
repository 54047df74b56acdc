"""Scaling on a render-bound animation: one node vs plain Blender, two nodes vs one.

    .venv/bin/python bench/scaling.py [--blender bpy --blender /usr/bin/blender]
                                      [--width 240 --height 180 --samples 64 --frames 12]

For each Blender (`bpy`, the official Blender as a module, by default; an executable such
as Debian's 3.4 with another `--blender PATH`), on the test project of tests/make_scene.py
(textured plane, a cube linked from lib/lib.blend, a moving sphere; Cycles on the CPU):

1. plain `blender -b scene.blend -t 1 -a` (bpy: the same in a child Python);
2. a farm with one `blendfarm node --threads 1`: the animation submitted once (cold: the
   node has never seen the file) and again as a second, identical project (warm: the node
   already rendered it);
3. plain `-t 2 -a`: the machine's own ceiling for two renders is `-t 1` / `-t 2`;
4. a farm with two `--threads 1` nodes, cold then warm.

Targets (issue 10): one warm node ≤ 1.05 × plain `-t 1`; the speed-up of two nodes over one
≥ 0.9 × the ceiling. Writes bench/results/scaling.json (see record.py).
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

TARGET_ONE_NODE = 1.05
TARGET_SHARE_OF_CEILING = 0.9


def farm_pair(
    tmp: Path, blender: Blender, nodes: int, project: Path, options: list[str], timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fresh farm with `nodes` one-thread nodes: the project rendered cold, then again."""
    with Farm(tmp) as farm:
        for index in range(nodes):
            farm.add_node(f"n{index + 1}", ["--threads", "1", "--blender", blender.spec])
        farm.wait_nodes(nodes)
        cold = farm.render_project(project, "scene.blend", options, timeout)
        print(f"  {nodes} node(s), cold: {cold['wall_s']:.2f} s", flush=True)
        warm = farm.render_project(project, "scene.blend", options, timeout)
        print(f"  {nodes} node(s), warm: {warm['wall_s']:.2f} s", flush=True)
    return cold, warm


def measure(blender: Blender, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"blender": blender.version()}
    print(f"{found['blender']}: making the scene", flush=True)
    project = tmp / "project"
    scene = make_project(blender, project, args.width, args.height, args.samples, args.frames)
    options = ["--frames", f"1-{args.frames}", "--tiles", "1", "--title", "scaling"]
    runs: dict[str, list[float]] = {}
    farms: dict[str, list[dict[str, Any]]] = {}
    for index in range(args.rounds):
        for threads in (1, 2):
            out = str(tmp / f"plain-t{threads}-{index}" / "frame_####")
            wall = run_timed(blender.render_command(scene, out, threads), args.timeout)
            print(f"  plain -t {threads} -a: {wall:.2f} s", flush=True)
            runs.setdefault(f"plain_t{threads}_s", []).append(round(wall, 3))
            farm_dir = tmp / f"farm-{threads}-{index}"
            cold, warm = farm_pair(farm_dir, blender, threads, project, options, args.timeout)
            farms.setdefault(f"{threads} cold", []).append(cold)
            farms.setdefault(f"{threads} warm", []).append(warm)
            if not args.keep:
                shutil.rmtree(farm_dir, ignore_errors=True)
    for key, walls in runs.items():
        found[key] = statistics.median(walls)
        found[key.replace("_s", "_runs_s")] = walls
    found["farm"] = {}
    for key, cases in farms.items():
        walls = [c["wall_s"] for c in cases]
        found["farm"][key] = {
            "nodes": int(key.split()[0]),
            "mode": key.split()[1],
            "wall_s": statistics.median(walls),
            "wall_runs_s": walls,
            "chunks": cases[0]["chunks"],
            "renders_by_node": [c["renders_by_node"] for c in cases],
        }
    plain1, plain2 = found["plain_t1_s"], found["plain_t2_s"]
    farm = found["farm"]
    ceiling = plain1 / plain2
    found["ceiling"] = round(ceiling, 3)
    ratios: dict[str, float] = {}
    for mode in ("cold", "warm"):
        one, two = farm[f"1 {mode}"]["wall_s"], farm[f"2 {mode}"]["wall_s"]
        ratios[f"one_node_vs_plain_{mode}"] = round(one / plain1, 3)
        ratios[f"two_vs_one_{mode}"] = round(one / two, 3)
        ratios[f"two_vs_one_share_of_ceiling_{mode}"] = round(one / two / ceiling, 3)
    found["ratios"] = ratios
    found["targets_met"] = {
        "one_node_vs_plain": ratios["one_node_vs_plain_warm"] <= TARGET_ONE_NODE,
        "two_vs_one": ratios["two_vs_one_share_of_ceiling_warm"] >= TARGET_SHARE_OF_CEILING,
    }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--blender", action="append", help="bpy or an executable (repeatable; default: bpy)"
    )
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1, help="medians over this many rounds")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per render")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it (logs, scene)")
    args = parser.parse_args()
    stop_on_sigterm()
    blenders = [Blender(spec) for spec in args.blender or ["bpy"]]
    config = {
        "blenders": [b.spec for b in blenders],
        "width": args.width,
        "height": args.height,
        "samples": args.samples,
        "frames": args.frames,
        "rounds": args.rounds,
        "node_threads": 1,
        "targets": {
            "one_node_vs_plain_max": TARGET_ONE_NODE,
            "two_vs_one_share_of_ceiling_min": TARGET_SHARE_OF_CEILING,
        },
    }
    record = Record("scaling", args.out, config)
    all_ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="blendfarm-scaling-") as tmp_name:
            tmp = args.keep or Path(tmp_name)
            for blender in blenders:
                where = tmp / blender.tag
                shutil.rmtree(where, ignore_errors=True)
                where.mkdir(parents=True)
                try:
                    record.figures[blender.tag] = measure(blender, where, args)
                except Exception as exc:  # one Blender failing leaves the others' figures
                    all_ok = False
                    message = f"{type(exc).__name__}: {exc}".strip()
                    record.figures[blender.tag] = {"error": message[:2000]}
                    print(f"{blender.tag} failed: {message}", file=sys.stderr, flush=True)
    except BaseException as exc:
        record.failed(exc)
        raise
    finally:
        data = record.save(all_ok)
        print(f"written to {args.out}")
    for tag, found in data["figures"].items():
        if "ratios" in found:
            print(tag, found["ratios"])
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
