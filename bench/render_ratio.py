"""Rendering through the farm relative to plain Blender, on this machine.

    /work/main/.venv/bin/python bench/render_ratio.py [--width 401 --height 301 --samples 16]

1. Generates a scene with tests/make_scene.py (a linked library and a texture; 4 frames).
2. Baseline: plain `blender -b scene.blend -f 1` (wall time per frame, median of
   `--repeats` runs) and `blender -b scene.blend -a` (the 4 frames in one Blender).
3. Farm: a real `blendfarm serve`, then per case `blendfarm submit` (the project folder)
   followed by one `blendfarm node --burst` (warm Blender sessions, the default), polling
   GET /api/projects/{id} until done. Cases: a 1x1 still, a 3x3 still, a 4-frame 1x1
   animation. Then the same with `blendfarm node --cold --burst`.
4. Prints farm/plain ratios and writes bench/results/render_ratio.json.

The wall time of a case runs from the start of `blendfarm submit` to the project reading
"done" (so it holds packing, upload, node start-up, probe, rendering, stitching and, for
animations, mp4 encoding). The whole script stops itself after `--budget` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BLENDFARM, RESULTS, Server, bench_env, loadavg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAKE_SCENE = ROOT / "tests" / "make_scene.py"
CASES = (
    # name, submit options, frames rendered
    ("still 1x1", ["--frame", "1", "--tiles", "1"], 1),
    ("still 3x3", ["--frame", "1", "--tiles", "3"], 1),
    ("anim 4f 1x1", ["--frames", "1-4", "--tiles", "1"], 4),
)
console = Console()


class OutOfTime(Exception):
    pass


class Clock:
    def __init__(self, budget: float):
        self.deadline = time.monotonic() + budget

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def cap(self, want: float) -> float:
        left = self.left()
        if left <= 1:
            raise OutOfTime("the time budget is spent")
        return min(want, left)


def run(cmd: list[str], clock: Clock, timeout: float, **kw: Any) -> tuple[float, str]:
    """Run a command to the end; (wall seconds, output). Raises on failure or timeout."""
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=clock.cap(timeout),
        check=False,
        **kw,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n{tail}")
    return wall, proc.stdout


def make_scene(blender: str, folder: Path, args: argparse.Namespace, clock: Clock) -> Path:
    base = [blender, "-b", "--factory-startup", "--python", str(MAKE_SCENE), "--"]
    run([*base, "library", str(folder / "lib" / "lib.blend")], clock, 120)
    scene = folder / "scene.blend"
    opts = [f"width={args.width}", f"height={args.height}", f"samples={args.samples}"]
    run([*base, "project", str(scene), *opts, "start=1", "end=4"], clock, 120)
    return scene


def plain_round(
    blender: str, scene: Path, out: Path, index: int, clock: Clock
) -> tuple[float, float]:
    """One plain `-f 1` and one plain `-a` (frames 1-4): their wall seconds."""
    frame, _ = run(
        [blender, "-b", str(scene), "-o", str(out / f"f{index}_####"), "-F", "PNG", "-f", "1"],
        clock,
        120,
    )
    anim, _ = run(
        [blender, "-b", str(scene), "-o", str(out / f"a{index}_####"), "-F", "PNG", "-a"],
        clock,
        240,
    )
    return frame, anim


def farm_case(
    server: Server,
    project: Path,
    options: list[str],
    node_args: list[str],
    work: Path,
    clock: Clock,
    timeout: float,
) -> dict[str, Any]:
    env = bench_env()
    started = time.perf_counter()
    submit_s, out = run(
        [
            BLENDFARM,
            "--server",
            server.url,
            "submit",
            str(project),
            "--blend",
            "scene.blend",
            *options,
            "--json",
        ],
        clock,
        60,
        env=env,
    )
    pid = json.loads(out[out.index("{") :])["id"]
    node_log = work.parent / f"node-{work.name}-{pid}.log"
    with open(node_log, "wb") as log:
        node = subprocess.Popen(
            [
                BLENDFARM,
                "--server",
                server.url,
                "node",
                "--burst",
                "--work-dir",
                str(work),
                "--name",
                f"bench-{work.name}",
                *node_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            view: dict[str, Any] = {}
            end = time.monotonic() + clock.cap(timeout)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                while time.monotonic() < end:
                    view = client.get(f"/api/projects/{pid}").json()
                    if view["state"] in ("done", "error"):
                        break
                    time.sleep(0.05)
                done_s = time.perf_counter() - started
                if view.get("state") != "done":
                    raise RuntimeError(
                        f"project {pid} ended {view.get('state')}: {view.get('error')}\n"
                        f"node log: {node_log.read_text(errors='replace')[-1500:]}"
                    )
                result = client.get(f"/api/projects/{pid}/result")
                result.raise_for_status()
            try:
                node_code = node.wait(timeout=clock.cap(30))
            except subprocess.TimeoutExpired:
                node_code = None
        finally:
            if node.poll() is None:
                node.terminate()
                try:
                    node.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait(timeout=5)
    return {
        "project": pid,
        "wall_s": round(done_s, 3),
        "submit_s": round(submit_s, 3),
        "chunks": view["chunks_total"],
        "node_exit": node_code,
        "result_type": result.headers.get("content-type"),
        "result_bytes": len(result.content),
        "_result": result.content,
    }


def image_diff(a: bytes | Path, b: bytes | Path) -> int | None:
    """The largest per-channel difference between two PNGs (None when sizes differ)."""
    import io

    imgs = [
        Image.open(io.BytesIO(x) if isinstance(x, bytes) else x).convert("RGBA") for x in (a, b)
    ]
    if imgs[0].size != imgs[1].size:
        return None
    arrays = [np.asarray(i, dtype=np.int16) for i in imgs]
    return int(np.abs(arrays[0] - arrays[1]).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=401)
    parser.add_argument("--height", type=int, default=301)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement")
    parser.add_argument("--budget", type=float, default=280.0, help="seconds for everything")
    parser.add_argument("--blender", default=shutil.which("blender") or "/usr/bin/blender")
    parser.add_argument("--out", type=Path, default=RESULTS / "render_ratio.json")
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it (logs, scene)")
    args = parser.parse_args()
    clock = Clock(args.budget)
    began = time.monotonic()
    version = subprocess.run(
        [args.blender, "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.splitlines()[0]

    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "loadavg_before": loadavg(),
        "blender": version,
        "scene": {
            "width": args.width,
            "height": args.height,
            "samples": args.samples,
            "frames": 4,
        },
        "rounds": 0,
        "plain": {},
        "farm": {},
        "skipped": [],
    }
    plain_frame: list[float] = []
    plain_anim: list[float] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="blendfarm-ratio-") as tmp_name:
        tmp = Path(tmp_name)
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            args.keep.mkdir(parents=True)
            tmp = args.keep
        project = tmp / "project"
        console.print("generating the scene")
        scene = make_scene(args.blender, project, args, clock)
        (tmp / "plain").mkdir()
        reference = tmp / "plain" / "f0_0001.png"
        server = Server(tmp / "data", tmp / "server.log")
        try:
            server.start()
            round_s = 0.0
            for index in range(args.rounds):
                if index and clock.left() < round_s * 1.3:
                    result["skipped"].append(
                        f"rounds {index + 1}..{args.rounds}: not enough time left "
                        f"({clock.left():.0f} s, a round took {round_s:.0f} s)"
                    )
                    break
                round_began = time.monotonic()
                console.print(f"round {index + 1}: plain Blender")
                frame, anim = plain_round(args.blender, scene, tmp / "plain", index, clock)
                plain_frame.append(frame)
                plain_anim.append(anim)
                # alternate which node kind goes first, so drift in the machine's load is shared
                modes = [("warm", []), ("cold", ["--cold"])]
                for mode, node_args in modes if index % 2 == 0 else modes[::-1]:
                    work = tmp / f"work-{mode}"
                    for name, options, _frames in CASES:
                        console.print(f"round {index + 1}: farm, {mode} node, {name}")
                        case = farm_case(server, project, options, node_args, work, clock, 150)
                        image = case.pop("_result")
                        if case["result_type"] == "image/png":
                            case["max_pixel_diff_vs_plain"] = image_diff(image, reference)
                        runs.setdefault(f"{mode} {name}", []).append(case)
                result["rounds"] = index + 1
                round_s = time.monotonic() - round_began
        except (OutOfTime, subprocess.TimeoutExpired) as exc:
            result["skipped"].append(f"round {result['rounds'] + 1}: {exc}")
        finally:
            code = server.stop()
            console.print(f"server stopped (exit code {code})")
    if not plain_frame:
        console.print("[red]no measurement finished[/red]")
        return 1
    result["plain"] = {
        "frame_s": round(statistics.median(plain_frame), 3),
        "frame_runs_s": [round(x, 3) for x in plain_frame],
        "anim4_s": round(statistics.median(plain_anim), 3),
        "anim4_runs_s": [round(x, 3) for x in plain_anim],
    }
    for name, options, frames in CASES:
        for mode in ("warm", "cold"):
            cases = runs.get(f"{mode} {name}", [])
            if len(cases) < result["rounds"] or not cases:
                continue  # a round broke off in the middle: keep only complete rounds
            cases = cases[: result["rounds"]]
            walls = [c["wall_s"] for c in cases]
            wall = statistics.median(walls)
            diffs = [c["max_pixel_diff_vs_plain"] for c in cases if "max_pixel_diff_vs_plain" in c]
            entry: dict[str, Any] = {
                "wall_s": round(wall, 3),
                "wall_runs_s": walls,
                "submit_s": round(statistics.median(c["submit_s"] for c in cases), 3),
                "chunks": cases[0]["chunks"],
                "result_type": cases[0]["result_type"],
                "node_exits": [c["node_exit"] for c in cases],
                "options": options,
            }
            if frames == 1:
                entry["ratio_vs_plain"] = round(wall / result["plain"]["frame_s"], 2)
                entry["max_pixel_diff_vs_plain"] = max(diffs) if diffs else None
            else:
                entry["ratio_vs_plain"] = round(wall / result["plain"]["anim4_s"], 2)
                entry["ratio_vs_plain_frames"] = round(
                    wall / (result["plain"]["frame_s"] * frames), 2
                )
            result["farm"][f"{mode} {name}"] = entry
    farm = result["farm"]
    for name, _, _ in CASES:
        warm, cold = farm.get(f"warm {name}"), farm.get(f"cold {name}")
        if warm and cold:
            result.setdefault("cold_vs_warm", {})[name] = round(cold["wall_s"] / warm["wall_s"], 2)
    warm1, warm3 = farm.get("warm still 1x1"), farm.get("warm still 3x3")
    if warm1 and warm3:
        result["tiles_3x3_vs_1x1_warm"] = round(warm3["wall_s"] / warm1["wall_s"], 2)
    cold1, cold3 = farm.get("cold still 1x1"), farm.get("cold still 3x3")
    if cold1 and cold3:
        result["tiles_3x3_vs_1x1_cold"] = round(cold3["wall_s"] / cold1["wall_s"], 2)
    result["loadavg_after"] = loadavg()
    result["total_s"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    show(result)
    console.print(f"written to {args.out}")
    return 1 if result["rounds"] == 0 else 0


def show(result: dict[str, Any]) -> None:
    plain = result["plain"]
    sc = result["scene"]
    console.print(
        f"[bold]render ratio[/bold]: {sc['width']}x{sc['height']}, {sc['samples']} samples, "
        f"{result['blender']}, {result['cpus']} CPUs, median of {result['rounds']} rounds "
        f"(load average {result['loadavg_before']} before, {result['loadavg_after']} after); "
        "plain Blender: "
        f"{plain['frame_s']:.2f} s per frame (-f 1), {plain['anim4_s']:.2f} s for 4 frames (-a)"
    )
    table = Table(title="farm wall time (submit -> done) / plain Blender")
    for col in ("case", "node", "chunks", "farm s", "submit s", "x plain", "cold/warm", "diff"):
        table.add_column(col, justify="left" if col in ("case", "node") else "right")
    for key, case in result["farm"].items():
        mode, name = key.split(" ", 1)
        ratio = result.get("cold_vs_warm", {}).get(name) if mode == "cold" else None
        table.add_row(
            name,
            mode,
            str(case["chunks"]),
            f"{case['wall_s']:.2f}",
            f"{case['submit_s']:.2f}",
            f"{case['ratio_vs_plain']:.2f}",
            "" if ratio is None else f"{ratio:.2f}",
            str(case.get("max_pixel_diff_vs_plain", "")),
        )
    console.print(table)
    console.print(
        "x plain: stills against one `blender -b -f 1`, the animation against one `-a` of 4 "
        "frames; diff: largest channel difference of the still against plain Blender's PNG"
    )
    for skipped in result["skipped"]:
        console.print(f"[red]skipped[/red] {skipped}")
    console.print(f"total {result['total_s']} s")


if __name__ == "__main__":
    sys.exit(main())
