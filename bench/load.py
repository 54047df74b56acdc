"""Load test of a real `blendfarm serve`: many simulated nodes, no Blender.

    .venv/bin/python bench/load.py [--nodes 200] [--seconds 30] [--projects 20] [--frames 400]
                                   [--tiles 2] [--heartbeat 3] [--render-time 0]
                                   [--idle-seconds 30]

Starts the server on free loopback ports with a temporary data dir, submits `--projects`
tiny projects (a zip holding a fake scene.blend), then runs `--nodes` simulated nodes in
one asyncio loop for `--seconds`. Each node registers, then loops: lease (a long poll of
`--wait` seconds, like the real node) -> answer the task (a fake probe JSON for probe
tasks, a PNG of exactly the chunk's size for chunks) -> lease again, and heartbeats every
`--heartbeat` seconds on its own. One "dashboard" polls GET /api/status every second.
The nodes speak HTTP through `rawhttp` (a bare keep-alive client): httpx would cost the
load script more CPU than the server.

Then (unless `--idle-seconds 0`) a fresh server with nothing queued gets the same number
of nodes long-polling for work and heartbeating every `--idle-heartbeat` seconds (20: the
real node's beat with the default node timeout), and its CPU share is measured.

Prints throughput, the server's CPU per chunk, latency percentiles per endpoint kind and
every error (any non-2xx and any transport error), writes bench/results/load.json, and
exits 1 when there was an error.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, TOKEN, Server, loadavg, percentile  # noqa: E402
from rawhttp import Answer, Connection, HttpError  # noqa: E402

KINDS = ("register", "lease", "probe", "result", "heartbeat", "status", "leave")
MAX_ERROR_SAMPLES = 30
# What issue 10 asks of the server (bench/README.md).
TARGET_CHUNKS_PER_S = 1000.0
TARGET_P99_MS = 50.0
TARGET_IDLE_CPU_SHARE = 0.02
TARGET_RESULT_S = 1.0  # a still's result after its last chunk
STILL_POLL = 0.02  # seconds between two looks at the still's project
console = Console()


def probe_answer(frames: int) -> dict[str, Any]:
    """A probe's answer for a 64x48 scene of `frames` frames."""
    return {
        "resolution_x": 64,
        "resolution_y": 48,
        "resolution_percentage": 100,
        "frame_start": 1,
        "frame_end": frames,
        "fps": 24,
        "fps_base": 1.0,
        "engine": "CYCLES",
        "compositor": False,
        "denoising": False,
        "missing": [],
    }


PROBE = probe_answer(50)  # lease_scaling.py's probe


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        # Latencies of requests started once every node is in its loop (past the start-up:
        # the ramp, the first probes, the herd their chunks wake): what the p99 targets read.
        self.steady: dict[str, list[float]] = defaultdict(list)
        self.steady_from = float("inf")  # perf_counter time
        self.status: dict[str, Counter[int]] = defaultdict(Counter)
        self.errors: Counter[str] = Counter()
        self.error_samples: list[dict[str, Any]] = []
        self.leased = 0
        self.leased_by_kind: Counter[str] = Counter()
        self.empty_leases = 0
        self.next_with_result = 0  # tasks that came with a result's answer (no lease request)
        self.chunks_accepted = 0
        self.chunks_refused = 0  # 200 but {"accepted": false}
        self.probes_accepted = 0
        # heartbeat "cancel" entries: for a task still being worked on (a lost lease), or for
        # one whose result was already on its way (the beat raced the result: stale cancel)
        self.lost_leases = 0
        self.stale_cancels = 0
        self.last_accept: dict[str, float] = {}  # project -> when its last result was taken
        self.still: dict[str, Any] = {}  # how soon the still's result could be downloaded

    def error(self, kind: str, what: str, detail: str) -> None:
        self.errors[f"{kind}: {what}"] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(
                {"kind": kind, "error": what, "detail": detail[:400], "t": time.time()}
            )

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


async def call(
    stats: Stats,
    kind: str,
    conn: Connection,
    method: str,
    path: str,
    body: bytes | None = None,
    payload: Any = None,
    content_type: str | None = None,
    timeout: float = 30.0,
) -> Answer | None:
    """One timed request; non-2xx and transport errors are recorded as errors."""
    started = time.perf_counter()
    try:
        if payload is not None:
            resp = await conn.json(method, path, payload, timeout)
        else:
            resp = await conn.request(method, path, body or b"", content_type, timeout)
    except HttpError as exc:
        stats.latency[kind].append(time.perf_counter() - started)
        stats.error(kind, "transport error", str(exc))
        return None
    took = time.perf_counter() - started
    stats.latency[kind].append(took)
    if started >= stats.steady_from:
        stats.steady[kind].append(took)
    stats.status[kind][resp.status] += 1
    if not 200 <= resp.status < 300:
        stats.error(kind, f"HTTP {resp.status}", f"{method} {path}: {resp.text}")
    return resp


class Pngs:
    """A valid PNG per size, made once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], bytes] = {}

    def get(self, width: int, height: int) -> bytes:
        key = (width, height)
        if key not in self._cache:
            buf = io.BytesIO()
            Image.new("RGBA", key, (200, 120, 40, 255)).save(buf, format="PNG")
            self._cache[key] = buf.getvalue()
        return self._cache[key]


def project_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scene.blend", b"BLENDER-v304" + bytes(256))
    return buf.getvalue()


def node_connection(base: str) -> Connection:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    return Connection(url.hostname, url.port, {"Authorization": f"Bearer {TOKEN}"})


async def register(stats: Stats, conn: Connection, name: str, timeout: float) -> bool:
    body = {"blender_version": "3.4.1", "hostname": name, "cores": 2, "version": "sim"}
    resp = await call(
        stats,
        "register",
        conn,
        "POST",
        f"/api/nodes/{name}/register",
        payload=body,
        timeout=timeout,
    )
    return resp is not None and resp.status == 200


async def heartbeats(
    stats: Stats,
    conn: Connection,
    name: str,
    holding: dict[int, str],
    every: float,
    deadline: float,
    timeout: float,
) -> None:
    """A heartbeat every `every` seconds naming the tasks held, until `deadline`."""
    await asyncio.sleep(random.uniform(0, every))
    beat = 0
    while time.monotonic() < deadline:
        beat += 1
        tasks = list(holding)
        log = [f"{name}: simulated log line {beat}"] if tasks else []
        resp = await call(
            stats,
            "heartbeat",
            conn,
            "POST",
            f"/api/nodes/{name}/heartbeat",
            payload={"tasks": tasks, "log": log},
            timeout=timeout,
        )
        if resp is not None and resp.status == 200:
            for tid in resp.json().get("cancel", []):
                if holding.get(tid) == "working":
                    stats.lost_leases += 1
                else:
                    stats.stale_cancels += 1
        await asyncio.sleep(max(0.0, min(every, deadline - time.monotonic())))


async def sim_node(
    index: int,
    base: str,
    stats: Stats,
    pngs: Pngs,
    start_at: float,
    deadline: float,
    args: argparse.Namespace,
) -> None:
    name = f"sim-{index:03d}"
    holding: dict[int, str] = {}  # task id -> "working" | "sending"
    work, beats_conn = node_connection(base), node_connection(base)  # heartbeats run beside
    probe = probe_answer(args.frames)
    wait = min(args.wait, max(0.0, args.seconds))
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    if not await register(stats, work, name, args.timeout):
        return
    beats = asyncio.create_task(
        heartbeats(stats, beats_conn, name, holding, args.heartbeat, deadline, args.timeout)
    )
    idle = 0.5
    follow = "" if args.lease_each else f"&next=cpu&node={name}"
    handed: dict[str, Any] | None = None  # the task a result's answer brought
    try:
        while time.monotonic() < deadline:
            if handed is not None:
                task, handed = handed, None
                stats.next_with_result += 1
            else:
                left = deadline - time.monotonic()
                path = f"/api/nodes/{name}/lease"
                if wait > 0:
                    path += f"?wait={max(0.0, min(wait, left)):.1f}"
                resp = await call(stats, "lease", work, "POST", path, timeout=args.timeout + wait)
                if resp is None or resp.status not in (200, 204):
                    await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                    continue
                if resp.status == 204:
                    stats.empty_leases += 1
                    if wait <= 0:  # no long poll: back off like the node used to
                        pause = idle * random.uniform(0.8, 1.2)
                        await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                        idle = min(idle * 1.5, 5.0)
                    continue
                task = resp.json()
            idle = 0.5
            stats.leased += 1
            stats.leased_by_kind[task["kind"]] += 1
            holding[task["id"]] = "working"
            try:
                if args.render_time > 0 and task["kind"] == "chunk":
                    await asyncio.sleep(args.render_time * random.uniform(0.5, 1.5))
                query = f"?lease={task['lease']}"
                holding[task["id"]] = "sending"
                if task["kind"] == "probe":
                    resp = await call(
                        stats,
                        "probe",
                        work,
                        "POST",
                        f"/api/tasks/{task['id']}/probe{query}",
                        payload=probe,
                        timeout=args.timeout,
                    )
                    if resp is not None and resp.status == 200:
                        stats.probes_accepted += bool(resp.json().get("accepted"))
                else:
                    rect = task["rect"]
                    png = pngs.get(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"])
                    resp = await call(
                        stats,
                        "result",
                        work,
                        "PUT",
                        f"/api/tasks/{task['id']}/result{query}{follow}",
                        body=png,
                        content_type="image/png",
                        timeout=args.timeout,
                    )
                    if resp is not None and resp.status == 200:
                        handed = resp.json().get("next")
                        if resp.json().get("accepted"):
                            stats.chunks_accepted += 1
                            stats.last_accept[task["project"]] = time.monotonic()
                        else:
                            stats.chunks_refused += 1
            finally:
                del holding[task["id"]]
    finally:
        await beats
        await call(stats, "leave", work, "POST", f"/api/nodes/{name}/leave", timeout=args.timeout)
        work.close()
        beats_conn.close()


async def idle_node(
    index: int, base: str, stats: Stats, start_at: float, deadline: float, args: argparse.Namespace
) -> None:
    """A node with nothing to do: it long-polls for work and heartbeats, as the real one."""
    name = f"idle-{index:03d}"
    work, beats_conn = node_connection(base), node_connection(base)
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    if not await register(stats, work, name, args.timeout):
        return
    beats = asyncio.create_task(
        heartbeats(stats, beats_conn, name, {}, args.idle_heartbeat, deadline, args.timeout)
    )
    try:
        while time.monotonic() < deadline:
            left = deadline - time.monotonic()
            path = f"/api/nodes/{name}/lease?wait={max(0.0, min(args.wait, left)):.1f}"
            resp = await call(stats, "lease", work, "POST", path, timeout=args.timeout + args.wait)
            if resp is not None and resp.status == 200:
                stats.error("lease", "work for an idle node", resp.text)
            elif resp is not None and resp.status == 204:
                stats.empty_leases += 1
    finally:
        beats.cancel()
        await asyncio.gather(beats, return_exceptions=True)
        await call(stats, "leave", work, "POST", f"/api/nodes/{name}/leave", timeout=args.timeout)
        work.close()
        beats_conn.close()


async def dashboard(base: str, stats: Stats, deadline: float) -> None:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    conn = Connection(url.hostname, url.port)
    while time.monotonic() < deadline:
        await call(stats, "status", conn, "GET", "/api/status")
        await asyncio.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    conn.close()


async def watch_still(base: str, pid: str, stats: Stats, deadline: float) -> None:
    """Poll the still's project until it is done: how long after its last chunk was taken
    its result could be downloaded."""
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    conn = Connection(url.hostname, url.port)
    try:
        while time.monotonic() < deadline:
            resp = await conn.request("GET", f"/api/projects/{pid}")
            if resp.status == 200 and resp.json()["state"] == "done":
                seen = time.monotonic()
                result = await conn.request("GET", f"/api/projects/{pid}/result")
                last = stats.last_accept.get(pid)
                stats.still = {
                    "result_status": result.status,
                    "result_after_last_chunk_s": None if last is None else round(seen - last, 3),
                    "poll_s": STILL_POLL,
                }
                return
            await asyncio.sleep(STILL_POLL)
        stats.still = {"result_status": None, "result_after_last_chunk_s": None}
    except HttpError as exc:
        stats.error("still", "transport error", str(exc))
    finally:
        conn.close()


async def run_load(
    base: str, args: argparse.Namespace, stats: Stats, still: str | None = None
) -> tuple[float, float]:
    pngs = Pngs()
    for w, h in {(64, 48), (64 // args.tiles, 48 // args.tiles)}:
        pngs.get(w, h)
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    stats.steady_from = time.perf_counter() + args.ramp + 2 * args.render_time + 1.0
    ramp = args.ramp / max(1, args.nodes)
    jobs = [
        sim_node(i, base, stats, pngs, t0 + ramp * i, deadline, args) for i in range(args.nodes)
    ]
    jobs += [dashboard(base, stats, deadline) for _ in range(args.watchers)]
    if still is not None:
        jobs.append(watch_still(base, still, stats, deadline))
    limit = args.seconds + args.timeout * 3 + args.wait + 30
    results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), timeout=limit)
    for res in results:
        if isinstance(res, BaseException):
            stats.error("client", type(res).__name__, repr(res))
    return t0, time.monotonic()


async def run_idle(
    base: str, args: argparse.Namespace, stats: Stats, server: Server
) -> dict[str, Any]:
    """Idle nodes long-polling an empty farm; the server's CPU once they all wait."""
    t0 = time.monotonic()
    ramp = args.ramp / max(1, args.nodes)
    settle = args.ramp + 3.0  # every node registered and waiting
    deadline = t0 + settle + args.idle_seconds
    jobs = [idle_node(i, base, stats, t0 + ramp * i, deadline, args) for i in range(args.nodes)]
    gathered = asyncio.gather(*jobs, return_exceptions=True)
    await asyncio.sleep(settle)
    cpu0, m0 = server.cpu_seconds() or 0.0, time.monotonic()
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    cpu1, m1 = server.cpu_seconds() or 0.0, time.monotonic()
    limit = args.timeout * 3 + args.wait + 30
    for res in await asyncio.wait_for(gathered, timeout=limit):
        if isinstance(res, BaseException):
            stats.error("client", type(res).__name__, repr(res))
    share = (cpu1 - cpu0) / (m1 - m0)
    return {
        "nodes": args.nodes,
        "measured_s": round(m1 - m0, 2),
        "wait_s": args.wait,
        "heartbeat_s": args.idle_heartbeat,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_share": round(share, 4),
        "empty_leases": stats.empty_leases,
        "heartbeats": len(stats.latency.get("heartbeat", [])),
        "errors": stats.error_count,
        "target_cpu_share": TARGET_IDLE_CPU_SHARE,
        "target_met": share < TARGET_IDLE_CPU_SHARE,
    }


def submit_projects(base: str, count: int, tiles: int) -> tuple[list[str], str]:
    """`count` animations, then one still (frame 1) whose result is watched; their ids."""
    data = project_zip()
    ids = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(count + 1):
            fields = {"title": f"load-{i}", "tiles": str(tiles)}
            if i == count:
                fields.update(title="still", frame="1")
            resp = client.post(
                "/api/projects",
                data=fields,
                files={"file": ("load.zip", data, "application/zip")},
            )
            if resp.status_code != 201:
                raise RuntimeError(f"submit failed: HTTP {resp.status_code} {resp.text}")
            ids.append(resp.json()["id"])
    return ids[:-1], ids[-1]


def ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 2)


def summarize(
    stats: Stats, args: argparse.Namespace, elapsed: float, extra: dict[str, Any]
) -> dict[str, Any]:
    latency: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        values = stats.latency.get(kind, [])
        latency[kind] = {
            "count": len(values),
            "p50_ms": ms(values, 50),
            "p99_ms": ms(values, 99),
            "max_ms": None if not values else round(max(values) * 1000, 2),
            "status": {str(k): v for k, v in sorted(stats.status.get(kind, {}).items())},
        }
    chunks_per_s = stats.chunks_accepted / elapsed
    server_cpu = float(extra["server_cpu_s"])
    targets: dict[str, Any] = {
        "chunks_per_s": {
            "target": TARGET_CHUNKS_PER_S,
            "value": round(chunks_per_s, 1),
            # What the server would do with a whole core to itself at its measured CPU cost.
            "server_capacity": None
            if not server_cpu
            else round(stats.chunks_accepted / server_cpu, 1),
        }
    }
    ready = extra.get("still", {}).get("result_after_last_chunk_s")
    targets["still_result_s"] = {
        "target": TARGET_RESULT_S,
        "value": ready,
        "met": ready is not None and ready <= TARGET_RESULT_S,
    }
    if args.render_time > 0:
        for kind in ("lease", "result"):
            steady = stats.steady.get(kind, [])
            p99 = ms(steady, 99)
            targets[f"p99_{kind}_ms"] = {
                "target": TARGET_P99_MS,
                "value": p99,
                "requests": len(steady),
                "after_s": round(args.ramp + 2 * args.render_time + 1.0, 1),
                "met": p99 is None or p99 <= TARGET_P99_MS,
            }
    else:
        targets["chunks_per_s"]["met"] = chunks_per_s >= TARGET_CHUNKS_PER_S
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "nodes": args.nodes,
            "seconds": args.seconds,
            "projects": args.projects,
            "tiles": args.tiles,
            "frames_per_project": args.frames,
            "heartbeat_s": args.heartbeat,
            "render_time_s": args.render_time,
            "long_poll_s": args.wait,
            "ramp_s": args.ramp,
            "watchers": args.watchers,
            "client": "rawhttp (one keep-alive connection per node, plus one for heartbeats)",
        },
        "elapsed_s": round(elapsed, 2),
        "tasks_leased": stats.leased,
        "tasks_leased_by_kind": dict(stats.leased_by_kind),
        "empty_leases": stats.empty_leases,
        "next_with_result": stats.next_with_result,
        "chunks_accepted": stats.chunks_accepted,
        "chunks_refused": stats.chunks_refused,
        "probes_accepted": stats.probes_accepted,
        "lost_leases": stats.lost_leases,
        "stale_cancels": stats.stale_cancels,
        "tasks_per_s": round(stats.leased / elapsed, 1),
        "chunks_per_s": round(chunks_per_s, 1),
        "requests_per_s": round(sum(len(v) for v in stats.latency.values()) / elapsed, 1),
        "server_cpu_ms_per_chunk": None
        if not stats.chunks_accepted
        else round(server_cpu * 1000 / stats.chunks_accepted, 3),
        "latency": latency,
        "targets": targets,
        "errors": stats.error_count,
        "errors_by_kind": dict(stats.errors),
        "error_samples": stats.error_samples,
        **extra,
    }


def log_problems(path: Path, limit: int = 80) -> list[str]:
    """ERROR/WARNING lines of the server's log, with the tracebacks that follow them."""
    out: list[str] = []
    inside = False
    for line in path.read_text(errors="replace").splitlines():
        stamped = bool(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line))
        if stamped:
            inside = " ERROR " in line or " WARNING " in line
        if inside:
            out.append(line)
            if len(out) >= limit:
                break
    return out


def show(result: dict[str, Any]) -> None:
    cfg = result["config"]
    console.print(
        f"[bold]blendfarm load[/bold]: {cfg['nodes']} nodes, {result['elapsed_s']} s, "
        f"{cfg['projects']} projects x {cfg['frames_per_project']} frames x "
        f"{cfg['tiles']}x{cfg['tiles']} tiles, render time {cfg['render_time_s']} s, "
        f"{result['machine']['cpus']} CPUs, "
        f"load average {result['loadavg_before']} before, {result['loadavg_after']} after"
    )
    table = Table(title="throughput")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, key in (
        ("tasks handed out / s", "tasks_per_s"),
        ("chunks completed / s", "chunks_per_s"),
        ("requests / s (all kinds)", "requests_per_s"),
        ("tasks leased", "tasks_leased"),
        ("chunks accepted", "chunks_accepted"),
        ("chunks refused (accepted: false)", "chunks_refused"),
        ("empty leases (204)", "empty_leases"),
        ("tasks that came with a result's answer", "next_with_result"),
        ("lost leases (cancel while working)", "lost_leases"),
        ("stale cancels (task already sent)", "stale_cancels"),
        ("chunks left in the queue", "chunks_left"),
        ("server CPU s / wall s", "server_cpu_share"),
        ("server CPU ms / chunk", "server_cpu_ms_per_chunk"),
        ("load script CPU s / wall s", "client_cpu_share"),
        ("errors", "errors"),
    ):
        table.add_row(label, str(result.get(key)))
    capacity = result["targets"]["chunks_per_s"]["server_capacity"]
    table.add_row("chunks / server CPU s (one core's capacity)", str(capacity))
    idle = result.get("idle")
    if idle:
        table.add_row(
            f"idle: {idle['nodes']} nodes long-polling, server CPU share",
            f"{idle['server_cpu_share']:.4f}",
        )
    console.print(table)
    lat = Table(title="latency per endpoint kind (ms, measured by the client)")
    for col in ("kind", "requests", "p50", "p99", "max", "HTTP statuses"):
        lat.add_column(col, justify="left" if col in ("kind", "HTTP statuses") else "right")
    for kind, row in result["latency"].items():
        if not row["count"]:
            continue
        lat.add_row(
            kind,
            str(row["count"]),
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['max_ms']:.1f}",
            " ".join(f"{k}x{v}" for k, v in row["status"].items()),
        )
    console.print(lat)
    targets = Table(title="targets (issue 10)")
    for col in ("target", "wanted", "measured", "met"):
        targets.add_column(col)
    for name, row in result["targets"].items():
        if "met" in row:
            targets.add_row(name, str(row["target"]), str(row["value"]), str(row["met"]))
    if idle:
        targets.add_row(
            "idle server CPU share",
            f"< {idle['target_cpu_share']}",
            str(idle["server_cpu_share"]),
            str(idle["target_met"]),
        )
    console.print(targets)
    if result["errors"]:
        console.print(f"[bold red]{result['errors']} errors[/bold red]")
        for what, n in result["errors_by_kind"].items():
            console.print(f"  {n:6d}  {what}")
        for sample in result["error_samples"][:10]:
            console.print(f"  e.g. {sample['kind']}: {sample['error']}: {sample['detail']}")
    else:
        console.print("[green]no errors[/green]")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument(
        "--frames", type=int, default=400, help="frames per project (the queue must not drain)"
    )
    parser.add_argument("--tiles", type=int, default=2, help="N for NxN chunks per frame")
    parser.add_argument("--heartbeat", type=float, default=3.0, help="seconds between beats")
    parser.add_argument(
        "--render-time",
        type=float,
        default=0.0,
        help="simulated render seconds per chunk (x0.5..1.5; probes answer at once)",
    )
    parser.add_argument(
        "--lease-each",
        action="store_true",
        help="lease every task with a request of its own (no next task with the result)",
    )
    parser.add_argument(
        "--wait", type=float, default=25.0, help="long poll of a lease (0: poll with back-off)"
    )
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to start all nodes")
    parser.add_argument("--watchers", type=int, default=1, help="clients polling /api/status")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout")
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle long-poll phase (0: skip it)"
    )
    parser.add_argument(
        "--idle-heartbeat", type=float, default=20.0, help="heartbeat of idle nodes, seconds"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    parser.add_argument("--server-log", type=Path, help="copy the server's log here")
    args = parser.parse_args()
    if not (1 <= args.nodes <= 2000 and 0 < args.seconds <= 3600 and 1 <= args.tiles <= 48):
        parser.error("--nodes 1..2000, --seconds up to 3600, --tiles 1..48")
    if not (1 <= args.frames <= 100_000 and 0 <= args.wait <= 60):
        parser.error("--frames 1..100000, --wait 0..60")
    return args


def load_phase(args: argparse.Namespace, tmp: Path, stats: Stats) -> dict[str, Any]:
    server = Server(tmp / "data", tmp / "server.log")
    try:
        server.start()
        base = server.url
        console.print(f"server on {base}; submitting {args.projects} projects")
        ids, still = submit_projects(base, args.projects, args.tiles)
        load_before = loadavg()
        cpu0 = server.cpu_seconds() or 0.0
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        console.print(f"running {args.nodes} simulated nodes for {args.seconds:g} s")
        t0, t1 = asyncio.run(run_load(base, args, stats, still))
        elapsed = t1 - t0
        cpu1 = server.cpu_seconds() or 0.0
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        own = (own1.ru_utime - own0.ru_utime) + (own1.ru_stime - own0.ru_stime)
        with httpx.Client(base_url=base, timeout=30) as client:
            started = time.perf_counter()
            projects = client.get("/api/projects").json()
            projects_ms = (time.perf_counter() - started) * 1000
        mine = [p for p in projects if p["id"] in ids or p["id"] == still]
        done_by_server = sum(p["chunks_done"] for p in mine)
        total = sum(p["chunks_total"] for p in mine)
        extra = {
            "server_cpu_s": round(cpu1 - cpu0, 2),
            "server_cpu_share": round((cpu1 - cpu0) / elapsed, 2),
            "client_cpu_s": round(own, 2),
            "client_cpu_share": round(own / elapsed, 2),
            "chunks_total": total,
            "chunks_done_by_server": done_by_server,
            "chunks_left": total - done_by_server,
            "project_states": dict(Counter(p["state"] for p in mine)),
            "projects_list_ms_after": round(projects_ms, 1),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "still": stats.still,
        }
        if done_by_server != stats.chunks_accepted:
            stats.error(
                "consistency",
                "chunk count mismatch",
                f"the client had {stats.chunks_accepted} chunks accepted, "
                f"the server counts {done_by_server} done",
            )
        for p in mine:
            if p["state"] == "error":
                stats.error("consistency", "project in error", f"{p['id']}: {p['error']}")
        if total - done_by_server <= 0 and args.render_time == 0:
            console.print("[yellow]the queue drained: the rate is the queue's, not the server's")
        result = summarize(stats, args, elapsed, extra)
        result["server_log_problems"] = log_problems(server.log_path)
        if args.server_log:
            shutil.copyfile(server.log_path, args.server_log)
        return result
    finally:
        code = server.stop()
        console.print(f"server stopped (exit code {code})")


def idle_phase(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    stats = Stats()
    server = Server(tmp / "idle-data", tmp / "idle-server.log")
    try:
        server.start()
        console.print(f"idle: {args.nodes} nodes long-polling an empty farm")
        result = asyncio.run(run_idle(server.url, args, stats, server))
        result["error_samples"] = stats.error_samples[:10]
        return result
    finally:
        server.stop()


def main() -> int:
    args = parse_args()
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="blendfarm-load-") as tmp:
        result = load_phase(args, Path(tmp), stats)
        if args.idle_seconds > 0:
            result["idle"] = idle_phase(args, Path(tmp))
            result["errors"] += result["idle"]["errors"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    show(result)
    console.print(f"written to {args.out}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
