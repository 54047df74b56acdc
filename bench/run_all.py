"""`make bench`: every case one after the other, then docs/PERFORMANCE.md.

    .venv/bin/python bench/run_all.py [--only scaling,tiles] [--skip load] [--quick]

Each case runs as its own process (each is runnable alone: `python bench/scaling.py` ...)
with a time limit; its output streams to the console. Before a case runs, its result files
are removed, so a case that fails before writing leaves no figure from an earlier run. The
exit code, wall time and the load averages before and after each case go to
bench/results/run.json (merged with the cases not run this time). Then bench/report.py
writes docs/PERFORMANCE.md and prints it. Exits 1 when a case failed.

`--quick` renders the scaling case with bpy only (not Debian's Blender too).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, loadavgs, machine  # noqa: E402

HERE = Path(__file__).resolve().parent
RUN_FILE = RESULTS / "run.json"


def cases(quick: bool) -> list[dict[str, Any]]:
    """name, command (after the Python), result files, time limit in seconds."""
    blenders = ["--blender", "bpy"]
    debian = shutil.which("blender")
    if debian and not quick:
        blenders += ["--blender", debian]
    found = [
        {"name": "scaling", "args": ["scaling.py", *blenders], "out": ["scaling.json"]},
        {"name": "tiles", "args": ["tiles.py"], "out": ["tiles.json"]},
        {"name": "straggler", "args": ["straggler.py"], "out": ["straggler.json"]},
        # The latency case first: right after the saturated case (whose data dir of ~30,000
        # files is deleted at its end) making files costs this VM's journal-less ext4 more,
        # and its p99 read 62-77 ms instead of 19-43 (bench/README.md).
        {
            "name": "load-render1",
            "args": ["load.py", "--render-time", "1", "--out", str(RESULTS / "load-render1.json")],
            "out": ["load-render1.json"],
        },
        {"name": "load", "args": ["load.py"], "out": ["load.json"]},
        {"name": "transfer", "args": ["transfer.py"], "out": ["transfer.json"]},
    ]
    limits = {"scaling": 1200, "tiles": 400, "straggler": 480, "transfer": 300}
    for case in found:
        case["timeout"] = limits.get(case["name"], 180)
    return found


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    script = HERE / case["args"][0]
    entry: dict[str, Any] = {
        "command": " ".join(["python", f"bench/{case['args'][0]}", *case["args"][1:]]),
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg_before": loadavgs(),
        "outputs": case["out"],
    }
    if not script.exists():
        entry.update(exit=None, error=f"bench/{script.name} is not in this tree", seconds=0.0)
        return entry
    for name in case["out"]:
        (RESULTS / name).unlink(missing_ok=True)
    print(f"\n=== {case['name']}: {entry['command']}", flush=True)
    began = time.monotonic()
    tail: deque[str] = deque(maxlen=15)
    proc = subprocess.Popen(
        [sys.executable, str(script), *case["args"][1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    stream = proc.stdout

    def relay() -> None:
        for line in stream:
            print(line, end="", flush=True)
            tail.append(line.rstrip())

    reader = threading.Thread(target=relay, name=f"relay-{case['name']}", daemon=True)
    reader.start()
    try:
        code: int | None = proc.wait(timeout=case["timeout"])
    except subprocess.TimeoutExpired:
        code = None
    if proc.poll() is None:  # over its time: SIGTERM, so that it stops its farm
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        entry["error"] = f"stopped after its time limit of {case['timeout']} s"
        code = None
    reader.join(timeout=10)
    entry["exit"] = code
    entry["seconds"] = round(time.monotonic() - began, 1)
    entry["loadavg_after"] = loadavgs()
    entry["output_tail"] = list(tail)
    if code != 0 and "error" not in entry:
        entry["error"] = f"exited {code}"
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--skip", default="", help="comma-separated case names")
    parser.add_argument("--quick", action="store_true", help="scaling with bpy only")
    parser.add_argument("--no-report", action="store_true", help="do not write the report")
    args = parser.parse_args()
    chosen = cases(args.quick)
    names = [c["name"] for c in chosen]
    wanted = set(args.only.split(",")) if args.only else set(names)
    wanted -= set(filter(None, args.skip.split(",")))
    unknown = wanted - set(names)
    if unknown:
        parser.error(f"unknown case {sorted(unknown)[0]!r}: the cases are {', '.join(names)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        run = json.loads(RUN_FILE.read_text())
    except (OSError, ValueError):
        run = {}
    run.setdefault("cases", {})
    run["date"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run["machine"] = machine()
    began = time.monotonic()
    failed = []
    for case in chosen:
        if case["name"] not in wanted:
            continue
        entry = run_case(case)
        run["cases"][case["name"]] = entry
        RUN_FILE.write_text(json.dumps(run, indent=2) + "\n")
        if entry.get("error"):
            failed.append(case["name"])
            print(f"=== {case['name']} failed: {entry['error']}", flush=True)
    run["seconds"] = round(time.monotonic() - began, 1)
    RUN_FILE.write_text(json.dumps(run, indent=2) + "\n")
    if not args.no_report:
        subprocess.run([sys.executable, str(HERE / "report.py")], check=False)
    print(f"\nbench: {run['seconds']:.0f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
