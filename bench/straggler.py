"""The last chunk is the slow one: a 3×3 still on a fast node and a slow one, with and
without the server's duplicate rule.

    .venv/bin/python bench/straggler.py [--blender bpy] [--samples 512] [--slow-share 0.03]

Two nodes: a fast one (`--threads 2`) and a slow one (`--threads 1`, `nice 19`, and its
Blender stopped (SIGSTOP) for all but `--slow-share` of every 0.5 s, so that it is really
slower even on a 2-core machine whose other work nice alone would not beat). For each
setting of `BLENDFARM_DUPLICATES` (0, then 1) a fresh farm renders a warm-up 3×3 still
(both nodes open the file) and then the measured 3×3 still; the figure is its wall time,
submit -> done, and the chunk renders each node started.

The duplicate rule (issue 10, item 4: an idle node runs a copy of the longest-running chunk,
the first result wins) is switched by the server setting BLENDFARM_DUPLICATES. When this
server has no such setting (`blendfarm serve --print-config` does not list it) the run
without it is measured and the other is recorded as not available.
Writes bench/results/straggler.json (see record.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blenders import Blender, make_project  # noqa: E402
from common import (  # noqa: E402
    BLENDFARM,
    RESULTS,
    NodeProcess,
    bench_env,
    child_pids,
    stop_on_sigterm,
)
from farmrun import Farm  # noqa: E402
from record import Record  # noqa: E402

SETTING = "BLENDFARM_DUPLICATES"
PERIOD = 0.5


def server_has_setting(name: str) -> bool:
    """Whether `blendfarm serve` knows the environment variable `name`."""
    proc = subprocess.run(
        [BLENDFARM, "serve", "--print-config"],
        env={**bench_env(), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return name in proc.stdout


class Throttle:
    """Lets the Blender of `node` (the children leading their own process group) run only
    `share` of every PERIOD seconds: SIGSTOP / SIGCONT to their groups, from a thread."""

    def __init__(self, node: NodeProcess, share: float):
        self.node = node
        self.share = share
        self.stopped: set[int] = set()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="throttle", daemon=True)

    def __enter__(self) -> Throttle:
        if self.share < 1:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._signal(set(self.stopped), signal.SIGCONT)

    def _groups(self) -> set[int]:
        proc = self.node.proc
        if proc is None or proc.poll() is not None:
            return set()
        groups = set()
        for child in child_pids(proc.pid):
            try:
                if os.getpgid(child) == child:
                    groups.add(child)
            except ProcessLookupError:
                continue
        return groups

    def _signal(self, groups: set[int], sig: signal.Signals) -> None:
        for group in groups:
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGSTOP:
                self.stopped.add(group)
            else:
                self.stopped.discard(group)

    def _run(self) -> None:
        while not self._halt.is_set():
            self._signal(self._groups() | self.stopped, signal.SIGCONT)
            if self._halt.wait(PERIOD * self.share):
                break
            self._signal(self._groups(), signal.SIGSTOP)
            self._halt.wait(PERIOD * (1 - self.share))


def one_run(
    tmp: Path, blender: Blender, project: Path, duplicates: str, args: argparse.Namespace
) -> dict[str, Any]:
    options = ["--frame", "1", "--tiles", "3"]
    with Farm(tmp, server_env={SETTING: duplicates}) as farm:
        farm.add_node("fast", ["--threads", "2", "--blender", blender.spec])
        slow = farm.add_node("slow", ["--threads", "1", "--blender", blender.spec], nice=19)
        farm.wait_nodes(2)
        with Throttle(slow, args.slow_share):
            warmup = farm.render_project(project, "scene.blend", options, args.timeout)
            case = farm.render_project(project, "scene.blend", options, args.timeout)
    case["warmup_s"] = warmup["wall_s"]
    case["warmup_renders_by_node"] = warmup["renders_by_node"]
    return case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blender", default="bpy", help="bpy or a Blender executable")
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument(
        "--slow-share", type=float, default=0.03, help="share of time the slow Blender runs"
    )
    parser.add_argument("--rounds", type=int, default=1, help="medians over this many rounds")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per render")
    parser.add_argument("--out", type=Path, default=RESULTS / "straggler.json")
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it (logs, scene)")
    args = parser.parse_args()
    stop_on_sigterm()
    blender = Blender(args.blender)
    config = {
        "blender": blender.spec,
        "width": args.width,
        "height": args.height,
        "samples": args.samples,
        "tiles": 3,
        "rounds": args.rounds,
        "fast_node": "--threads 2",
        "slow_node": f"--threads 1, nice 19, its Blender running {args.slow_share:g} of the time",
        "setting": SETTING,
    }
    record = Record("straggler", args.out, config)
    try:
        with tempfile.TemporaryDirectory(prefix="blendfarm-straggler-") as tmp_name:
            tmp = args.keep or Path(tmp_name)
            figures = record.figures
            figures["blender"] = blender.version()
            figures["setting_exists"] = server_has_setting(SETTING)
            project = tmp / "project"
            shutil.rmtree(project, ignore_errors=True)
            make_project(blender, project, args.width, args.height, args.samples, 1)
            modes = ["0", "1"] if figures["setting_exists"] else ["0"]
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for index in range(args.rounds):
                for mode in modes if index % 2 == 0 else modes[::-1]:
                    where = tmp / f"farm-{mode}-{index}"
                    shutil.rmtree(where, ignore_errors=True)
                    case = one_run(where, blender, project, mode, args)
                    runs[mode].append(case)
                    print(f"  {SETTING}={mode}: {case['wall_s']:.2f} s", flush=True)
            for mode, cases in runs.items():
                walls = [c["wall_s"] for c in cases]
                figures[f"duplicates_{mode}"] = {
                    "wall_s": statistics.median(walls),
                    "wall_runs_s": walls,
                    "renders_by_node": [c["renders_by_node"] for c in cases],
                    "warmup_s": [c["warmup_s"] for c in cases],
                }
            if "duplicates_1" in figures:
                figures["with_vs_without"] = round(
                    figures["duplicates_1"]["wall_s"] / figures["duplicates_0"]["wall_s"], 3
                )
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
