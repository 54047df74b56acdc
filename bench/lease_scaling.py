"""How the cost of a lease (and a result, a heartbeat, a status) grows with the queue.

    /work/main/.venv/bin/python bench/lease_scaling.py [--queued 200,1000,4000,16000]

For each queue size, builds a farm (`blendfarm.server.app.build_farm`, temporary data dir),
submits projects of 50 frames x 2x2 tiles (200 chunks each), answers their probes, then
times `Farm.lease` (one new node per call), `Farm.chunk_result` (a PNG of the chunk's
size), `Farm.heartbeat` and `Farm.status`. In-process, one thread, no HTTP.
Writes bench/results/lease_scaling.json. Speed is reported as ratios to the smallest queue.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

from blendfarm import protocol as p
from blendfarm.server.services import build_farm
from blendfarm.server.validate import parse_submission
from blendfarm.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402
from load import PROBE  # noqa: E402

CHUNKS_PER_PROJECT = 50 * 2 * 2


@functools.cache
def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 120, 40, 255)).save(buf, format="PNG")
    return buf.getvalue()


def measure(queued: int, leases: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="blendfarm-lease-") as tmp:
        farm = build_farm(Settings(data=Path(tmp) / "data", token="t", password="p"))
        dispatch = farm.dispatch
        projects = max(1, queued // CHUNKS_PER_PROJECT)
        for _ in range(projects):
            upload = farm.data.temp_file()
            with zipfile.ZipFile(upload, "w") as zf:
                zf.writestr("scene.blend", b"BLENDER-v304" + bytes(256))
            farm.submissions.submit(upload, "bench.zip", parse_submission({"tiles": "2"}, 64))
        probes = [dispatch.lease("prober") for _ in range(projects)]  # only probes are queued
        for task in probes:
            assert task is not None and task.kind == "probe"
            dispatch.probe_result(task.id, task.lease, p.convert(PROBE, p.Probe))
        started = time.perf_counter()
        tasks = [dispatch.lease(f"n{i}") for i in range(leases)]
        lease_s = (time.perf_counter() - started) / leases
        uploads = []
        for task in tasks:
            assert task is not None and task.kind == "chunk" and task.rect is not None
            rect = task.rect
            upload = farm.data.temp_file()
            upload.write_bytes(png(rect.x1 - rect.x0, rect.y1 - rect.y0))
            uploads.append(upload)
        started = time.perf_counter()
        for task, upload in zip(tasks, uploads, strict=True):
            assert task is not None
            assert dispatch.chunk_result(task.id, task.lease, upload).accepted
        result_s = (time.perf_counter() - started) / leases
        started = time.perf_counter()
        for _ in range(10):
            farm.views.status()
        status_s = (time.perf_counter() - started) / 10
        started = time.perf_counter()
        for i in range(leases):
            dispatch.heartbeat(f"n{i}", p.Heartbeat())
        beat_s = (time.perf_counter() - started) / leases
        farm.close()
    return {
        "queued": projects * CHUNKS_PER_PROJECT,
        "lease_ms": round(lease_s * 1000, 3),
        "heartbeat_ms": round(beat_s * 1000, 3),
        "result_ms": round(result_s * 1000, 3),
        "status_ms": round(status_s * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", default="200,1000,4000,16000", help="queue sizes")
    parser.add_argument("--leases", type=int, default=100, help="leases timed per size")
    parser.add_argument("--out", type=Path, default=RESULTS / "lease_scaling.json")
    args = parser.parse_args()
    sizes = [int(x) for x in args.queued.split(",") if x.strip()]
    rows = [measure(n, min(args.leases, n // 2 or 1)) for n in sizes]
    base = rows[0]["lease_ms"] or 1e-9
    for row in rows:
        row["lease_ratio"] = round(row["lease_ms"] / base, 1)
        row["max_leases_per_s"] = round(1000 / row["lease_ms"], 1) if row["lease_ms"] else None
    table = Table(title="Farm call cost vs queued chunks (in-process, one thread)")
    for col in (
        "queued chunks",
        "lease ms",
        "x smallest",
        "leases/s at most",
        "result ms",
        "heartbeat ms",
        "status ms",
    ):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            str(row["queued"]),
            f"{row['lease_ms']:.2f}",
            f"{row['lease_ratio']:.1f}",
            str(row["max_leases_per_s"]),
            f"{row['result_ms']:.2f}",
            f"{row['heartbeat_ms']:.3f}",
            f"{row['status_ms']:.1f}",
        )
    Console().print(table)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
