"""A chaos soak: the server and the nodes are SIGKILLed at random while they render, and the
farm must heal itself and deliver exactly what a calm farm delivers.

    .venv/bin/python bench/chaos.py --minutes 2     # CI-sized (~5 min in all)
    .venv/bin/python bench/chaos.py --minutes 10    # the record

1. Builds two small Cycles projects with tests/make_scene.py (fixed seed and sample count).
2. Chaos: a real `blendfarm serve` and --nodes real `blendfarm node` processes on 127.0.0.1
   (free ports, a temporary data dir, Debian's Blender). Projects (3x3 stills, 2x2 and 1x1
   animations, in turn) are submitted so that --in-flight are unfinished at any time, at most
   --max-projects. Every --every seconds (jittered x0.5..1.5) the server or a node, picked at
   random, is SIGKILLed (a node with its Blender's process group) and started again at once
   with the same data dir or work dir and name. After --minutes the kills and submissions stop
   and every project is waited for.
3. Calm: a fresh farm renders the same projects in the same order; nothing is killed.
4. Checks (exit 1 when one fails): every project ends `done`; every raw chunk of the chaos
   run equals the calm run's by decoded pixels; no chunk is rendered after it was recorded
   as done, and a chunk is rendered twice only when its node died in the middle of it
   (bench/chaos_checks.py); nothing of the farm exits on its own. The figures go to
   bench/results/chaos.json.

Everything runs on loopback, every loop is bounded in count and time, and every process the
soak started is stopped at the end, also on Ctrl-C or an exception.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_checks import (  # noqa: E402
    Life,
    Render,
    account_renders,
    compare_raw,
    read_tasks,
)
from common import RESULTS, NodeProcess, Server, kill_strays  # noqa: E402

from blendfarm.archive import zip_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAKE_SCENE = ROOT / "tests" / "make_scene.py"
RENDERING = re.compile(r"^rendering (\S+) frame (-?\d+) chunk (\d+),(\d+)$")
ENDED = ("done", "error")
POLL = 0.25  # seconds between two looks at the farm
console = Console()


@dataclass(frozen=True)
class Spec:
    """One kind of project: which scene, and the submission's fields."""

    name: str
    scene: str
    fields: dict[str, str]


SPECS = (
    Spec("still3x3", "big", {"frame": "1", "tiles": "3"}),
    Spec("anim2x2", "big", {"frames": "2-3", "tiles": "2"}),
    Spec("anim1x1", "small", {"frames": "1-3", "tiles": "1"}),
)


@dataclass
class Job:
    """One project to submit; `attempts` names a new title each time (a submission cut off by
    a kill may or may not have arrived: the listing tells)."""

    index: int
    spec: Spec
    prefix: str
    titles: list[str] = field(default_factory=list)
    pid: str | None = None
    title: str | None = None
    sent: float | None = None  # monotonic, first attempt
    ended: float | None = None  # monotonic, first seen done or in error
    state: str = "unsent"

    def next_title(self) -> str:
        title = f"{self.prefix}-{self.index:03d}-{self.spec.name}" + (
            f"-r{len(self.titles)}" if self.titles else ""
        )
        self.titles.append(title)
        return title


@dataclass
class Kill:
    at: float  # seconds into the phase
    target: str  # "server" or a node's name
    life: int  # the node's life that ended (0: the server)
    blender_groups: int  # Blender process groups killed with the node
    back_s: float  # the server: from the kill to /api/health answering again


class Farm:
    """A server and its nodes, each of which can be killed and restarted."""

    def __init__(self, root: Path, label: str, args: argparse.Namespace):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.server = Server(
            root / "data",
            root / "server.log",
            extra=["--node-timeout", f"{args.node_timeout:g}"],
            own_session=True,
        )
        self.nodes = [
            NodeProcess(
                f"{label}-node-{i}",
                self.server.url,
                root / f"work-{i}",
                root / f"node-{i}.log",
                ["--blender", args.blender, "--threads", str(args.threads)],
                self._line,
            )
            for i in range(1, args.nodes + 1)
        ]
        self.client = httpx.Client(base_url=self.server.url, timeout=10)
        self.renders: list[Render] = []
        self.lives: list[Life] = []
        self.unexpected: list[str] = []
        self.escaped: list[str] = []  # processes a node's kill left alive
        self._lock = threading.Lock()

    def _line(self, node: str, life: int, t: float, line: str) -> None:
        m = RENDERING.match(line)
        if m:
            render = Render(t, node, life, m[1], int(m[2]), int(m[3]), int(m[4]))
            with self._lock:
                self.renders.append(render)

    def start(self) -> None:
        self.server.start(timeout=60)
        for node in self.nodes:
            self._start_node(node)

    def _start_node(self, node: NodeProcess) -> None:
        node.start()
        self.lives.append(Life(node.name, node.life, time.time()))

    def _end_life(self, node: NodeProcess, how: str) -> None:
        for life in reversed(self.lives):
            if life.node == node.name and life.number == node.life:
                life.ended, life.end = time.time(), how
                return

    def kill_node(self, node: NodeProcess) -> int:
        groups = node.kill()
        self._end_life(node, "killed")
        # Anything of the node's still alive got away from the kill (e.g. a Blender that
        # left its group): killed now, and reported.
        self.escaped += kill_strays(str(node.work) + os.sep)
        self._start_node(node)
        return groups

    def kill_server(self, down: float = 0.0) -> float:
        """SIGKILL the server, leave it down `down` seconds, start it again; the seconds from
        the kill until it answers."""
        began = time.monotonic()
        self.server.kill()
        time.sleep(down)
        self._restart_server()
        return time.monotonic() - began

    def _restart_server(self) -> None:
        for attempt in range(1, 6):
            try:
                self.server.start(timeout=60)
                return
            except RuntimeError as exc:
                self.server.kill()
                console.print(f"[yellow]the server did not come back ({attempt}/5): {exc}")
                time.sleep(1)
        raise RuntimeError("the server did not come back after 5 attempts")

    def watch(self, at: float) -> None:
        """Restart whatever exited on its own (that is a bug: nothing here ever gives up)."""
        for node in self.nodes:
            code = node.exit_code()
            if code is not None:
                node.kill()  # reaps it and joins its log reader
                self._end_life(node, f"exited {code}")
                self.unexpected.append(f"{node.name} exited with {code} at {at:.1f} s")
                console.print(f"[red]{at:6.1f}s {node.name} exited on its own ({code})")
                self._start_node(node)
        proc = self.server.proc
        if proc is not None and proc.poll() is not None:
            self.unexpected.append(f"the server exited with {proc.returncode} at {at:.1f} s")
            console.print(f"[red]{at:6.1f}s the server exited on its own ({proc.returncode})")
            self.server.kill()
            self._restart_server()

    def projects(self) -> list[dict[str, Any]] | None:
        """Every project, or None while the server does not answer."""
        try:
            resp = self.client.get("/api/projects")
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def submit(self, job: Job, archive: Path) -> None:
        """Send one attempt of `job`; a server that goes away meanwhile is not an error."""
        title = job.next_title()
        fields = {**job.spec.fields, "title": title, "blend": "scene.blend", "overscan": "0"}
        try:
            with open(archive, "rb") as fh:
                resp = self.client.post(
                    "/api/projects",
                    data=fields,
                    files={"file": ("project.zip", fh, "application/zip")},
                    timeout=120,
                )
        except httpx.HTTPError:
            return
        if resp.status_code == 201:
            job.pid, job.title = resp.json()["id"], title
        elif resp.status_code < 500:
            raise RuntimeError(f"the server refused {title}: {resp.status_code} {resp.text[:300]}")

    def download_raw(self, pid: str, out: Path) -> None:
        with self.client.stream("GET", f"/api/projects/{pid}/raw", timeout=120) as resp:
            resp.raise_for_status()
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "wb") as fh:
                for block in resp.iter_bytes():
                    fh.write(block)

    def stop(self) -> None:
        """SIGTERM everything (the nodes all at once), SIGKILL what does not stop."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            code = node.stop()
            self._end_life(node, "stopped" if code == 0 else f"stopped ({code})")
        self.server.stop()

    def close(self) -> None:
        """Kill whatever still runs (after `stop`, nothing)."""
        for node in self.nodes:
            node.kill()
        self.server.kill()
        self.client.close()


def drive(
    farm: Farm,
    jobs: list[Job],
    archives: dict[str, Path],
    args: argparse.Namespace,
    chaos_s: float,
    limit_s: float,
    rng: random.Random,
) -> tuple[list[Kill], float, bool]:
    """Submit `jobs` in order, keeping args.in_flight unfinished; during the first `chaos_s`
    seconds also kill something every ~args.every seconds (with chaos, no job is submitted
    after that). Returns (kills, seconds spent, whether every sent job ended in time)."""
    began = time.monotonic()
    kills: list[Kill] = []
    next_kill = began + args.every * rng.uniform(0.5, 1.5)
    next_report = began + 15
    while True:
        now = time.monotonic()
        at = now - began
        chaos = at < chaos_s
        submitting = chaos or chaos_s == 0
        if at > limit_s:
            return kills, at, False
        farm.watch(at)
        if chaos and now >= next_kill:
            kills.append(kill_one(farm, rng, at, args.server_down))
            next_kill = time.monotonic() + args.every * rng.uniform(0.5, 1.5)
        listing = farm.projects()
        if listing is not None:
            by_title = {p["title"]: p for p in listing}
            for job in jobs:
                if job.sent is None:
                    continue
                if job.pid is None:  # did a cut-off attempt arrive after all?
                    seen = [by_title[t] for t in job.titles if t in by_title]
                    if seen:
                        job.pid, job.title = seen[0]["id"], seen[0]["title"]
                view = by_title.get(job.title or "")
                if view is not None:
                    job.state = view["state"]
                    if job.state in ENDED and job.ended is None:
                        job.ended = time.monotonic()
            busy = sum(1 for j in jobs if j.sent is not None and j.ended is None)
            for job in jobs:
                if job.sent is not None and job.pid is None:  # lost with a server: again
                    farm.submit(job, archives[job.spec.scene])
                elif job.sent is None and submitting and busy < args.in_flight:
                    job.sent = time.monotonic()
                    farm.submit(job, archives[job.spec.scene])
                    busy += 1
            sent = [j for j in jobs if j.sent is not None]
            unsent_left = submitting and len(sent) < len(jobs)
            if sent and not unsent_left and all(j.ended is not None for j in sent):
                return kills, time.monotonic() - began, True
        if now >= next_report:
            sent = [j for j in jobs if j.sent is not None]
            ended = sum(1 for j in sent if j.ended is not None)
            console.print(
                f"{at:6.1f}s {ended}/{len(sent)} projects ended, {len(kills)} kills"
                + ("" if listing is not None else " (server not answering)")
            )
            next_report = now + 15
        time.sleep(POLL)


def kill_one(farm: Farm, rng: random.Random, at: float, server_down: float) -> Kill:
    """SIGKILL the server or a node (picked at random) and start it again."""
    victim = rng.choice(["server", *(n.name for n in farm.nodes)])
    if victim == "server":
        back = farm.kill_server(server_down)
        console.print(f"{at:6.1f}s killed the server; answering again after {back:.1f} s")
        return Kill(round(at, 2), "server", 0, 0, round(back, 2))
    node = next(n for n in farm.nodes if n.name == victim)
    life = node.life
    groups = farm.kill_node(node)
    console.print(f"{at:6.1f}s killed {victim} (life {life}) and {groups} Blender group(s)")
    return Kill(round(at, 2), victim, life, groups, 0.0)


def make_projects(root: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The two project folders (scene.blend, a linked library, a texture), zipped."""
    archives = {}
    sizes = {"big": (args.width, args.height), "small": (args.width // 2, args.height // 2)}
    for scene, (width, height) in sizes.items():
        folder = root / "scenes" / scene
        base = [args.blender, "-b", "--factory-startup", "--python", str(MAKE_SCENE), "--"]
        opts = [f"width={width}", f"height={height}", f"samples={args.samples}", "start=1", "end=4"]
        for cmd in (
            [*base, "library", str(folder / "lib" / "lib.blend")],
            [*base, "project", str(folder / "scene.blend"), *opts],
        ):
            subprocess.run(cmd, capture_output=True, timeout=180, check=True)
        archives[scene] = zip_folder(folder, root / "scenes" / f"{scene}.zip")
    return archives


def run_phase(
    label: str,
    root: Path,
    jobs: list[Job],
    archives: dict[str, Path],
    args: argparse.Namespace,
    chaos_s: float,
    limit_s: float,
) -> dict[str, Any]:
    """One farm from start to stop: drive it, fetch the raw zips, read its database."""
    farm = Farm(root / label, label, args)
    rng = random.Random(args.seed)
    try:
        farm.start()
        kills, spent, finished = drive(farm, jobs, archives, args, chaos_s, limit_s, rng)
        listing = farm.projects()
        for _ in range(40):  # the server answers at once unless it is in trouble
            if listing is not None:
                break
            time.sleep(0.5)
            listing = farm.projects()
        if listing is None:
            raise RuntimeError("the server does not list its projects any more")
        final = {p["title"]: p["state"] for p in listing}
        for job in jobs:
            job.state = final.get(job.title or "", job.state)
            if job.pid is not None and job.state == "done":
                farm.download_raw(job.pid, root / label / "raw" / f"{job.index:03d}.zip")
        farm.stop()
    finally:
        farm.close()
        left = kill_strays(str(farm.root) + os.sep)
    tasks, probes = read_tasks(farm.server.data / "blendfarm.db")
    sent = [j for j in jobs if j.sent is not None]
    first = min((j.sent for j in sent if j.sent is not None), default=0.0)
    last = max((j.ended for j in sent if j.ended is not None), default=first)
    errors = {p["title"]: p.get("error") or "" for p in listing}
    extra = [p for p in listing if p["title"] not in {j.title for j in sent}]
    return {
        "projects": len(sent),
        "projects_on_server": len(listing),
        "not_done": [
            f"{j.title}: {j.state} {errors.get(j.title or '', '')}".strip()
            for j in sent
            if j.pid is not None and j.state != "done"
        ]
        + [f"{j.prefix}-{j.index:03d} never arrived" for j in sent if j.pid is None]
        + [f"{p['title']} (a second copy): {p['state']}" for p in extra if p["state"] != "done"],
        "finished_in_time": finished,
        "seconds": round(spent, 1),
        "wall_s": round(last - first, 1),
        "kills": kills,
        "lives": farm.lives,
        "unexpected_exits": farm.unexpected,
        "escaped_kills": farm.escaped,
        "left_running": left,
        "accounting": account_renders(farm.renders, farm.lives, tasks),
        **probes,
    }


def load3() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="how long the kills go on")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between kills, ~")
    parser.add_argument("--seed", type=int, default=1, help="of the kill schedule")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="render threads per node")
    parser.add_argument("--node-timeout", type=float, default=10.0, help="the server's")
    parser.add_argument("--in-flight", type=int, default=3, help="unfinished projects kept")
    parser.add_argument("--max-projects", type=int, default=200)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument(
        "--server-down", type=float, default=0.0, help="seconds a killed server stays down"
    )
    parser.add_argument("--drain", type=float, default=600.0, help="seconds to wait at the end")
    parser.add_argument("--blender", default=shutil.which("blender") or "/usr/bin/blender")
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it (logs, data)")
    args = parser.parse_args()

    signalled: list[int] = []

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        if not signalled:  # once: a second Ctrl-C must not cut the clean-up short
            signalled.append(signum)
            raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: `&` in a script ignores it
        signal.signal(signum, interrupted)
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        args.keep.mkdir(parents=True)
        root = args.keep.resolve()
    else:
        root = Path(tempfile.mkdtemp(prefix="blendfarm-chaos-"))
    ok = False
    try:
        ok = soak(root, args)
    except KeyboardInterrupt:
        console.print(f"[red]interrupted (signal {signalled[0] if signalled else 2})[/red]")
        return 130
    finally:
        strays = kill_strays(str(root))
        if strays:
            console.print(f"[red]killed {len(strays)} stray process(es): {strays}")
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            console.print(f"logs and data kept in {root}")
    return 0 if ok else 1


def soak(root: Path, args: argparse.Namespace) -> bool:
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "loadavg_before": load3(),
        "blender": subprocess.run(
            [args.blender, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.splitlines()[0],
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"
        },
        "specs": [{"name": s.name, "scene": s.scene, **s.fields} for s in SPECS],
    }
    console.print(f"building the scenes in {root}")
    archives = make_projects(root, args)
    chaos_s = args.minutes * 60
    jobs = [Job(i, SPECS[i % len(SPECS)], "chaos") for i in range(args.max_projects)]
    console.print(f"[bold]chaos[/bold]: {chaos_s:.0f} s of kills every ~{args.every:g} s")
    chaos = run_phase("chaos", root, jobs, archives, args, chaos_s, chaos_s + args.drain)
    result["loadavg_after_chaos"] = load3()
    sent = [j for j in jobs if j.sent is not None]
    calm_jobs = [Job(j.index, j.spec, "calm") for j in sent]
    console.print(f"[bold]calm[/bold]: the same {len(calm_jobs)} projects, nothing killed")
    calm_limit = max(600.0, 3 * chaos["wall_s"])
    calm = run_phase("calm", root, calm_jobs, archives, args, 0.0, calm_limit)
    result["loadavg_after"] = load3()

    compared, differences = 0, []
    for a, b in zip(sent, calm_jobs, strict=True):
        za = root / "chaos" / "raw" / f"{a.index:03d}.zip"
        zb = root / "calm" / "raw" / f"{b.index:03d}.zip"
        if not (za.exists() and zb.exists()):
            continue  # a project not done: the first check says so
        n, problems = compare_raw(za, zb, root / "compare" / f"{a.index:03d}")
        compared += n
        differences += [f"{a.titles[-1]}: {p}" for p in problems]
    account = chaos["accounting"]
    kills: list[Kill] = chaos["kills"]
    checks = {
        "every project done": chaos["not_done"] + calm["not_done"],
        "raw chunks pixel-identical to the calm run": differences
        + ([] if compared else ["no chunk was compared"]),
        "no chunk rendered after it was done": account["renders_after_done"],
        "re-rendered only when the node died mid-render": account["unexplained_rerenders"],
        "no more renders than leases": account["renders_beyond_leases"],
        "every done chunk seen rendering in a node log": account[
            "done_chunks_never_seen_rendering"
        ],
        "nothing exited on its own": chaos["unexpected_exits"] + calm["unexpected_exits"],
        "no process of a killed node survived it": chaos["escaped_kills"],
        "nothing left running after the farm stopped": chaos["left_running"] + calm["left_running"],
        "the calm run rendered every chunk once": [
            f"{calm['accounting']['extra_renders']} extra renders"
        ]
        if calm["accounting"]["extra_renders"]
        else [],
    }
    result.update(
        {
            "kills": {
                "server": sum(1 for k in kills if k.target == "server"),
                "node": sum(1 for k in kills if k.target != "server"),
                "node_with_blender_session": sum(1 for k in kills if k.blender_groups),
                "server_back_s": sorted(k.back_s for k in kills if k.target == "server"),
            },
            "projects": len(sent),
            "chunks": account["chunks"],
            "chunks_compared": compared,
            "rerendered_because_node_died": account["extra_renders_node_died"],
            "chaos": _phase_summary(chaos),
            "calm": _phase_summary(calm),
            "wall_chaos_vs_calm": round(chaos["wall_s"] / calm["wall_s"], 2)
            if calm["wall_s"]
            else None,
            "checks": {name: {"ok": not bad, "found": bad[:20]} for name, bad in checks.items()},
            "kill_log": [vars(k) for k in kills],
        }
    )
    ok = all(not found for found in checks.values())
    result["ok"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    show(result)
    console.print(f"written to {args.out}")
    return ok


def _phase_summary(phase: dict[str, Any]) -> dict[str, Any]:
    account = dict(phase["accounting"])
    for key in (
        "unexplained_rerenders",
        "renders_after_done",
        "renders_beyond_leases",
        "done_chunks_never_seen_rendering",
        "renders_of_unknown_chunks",
    ):
        account[key] = len(account[key])
    lives: list[Life] = phase["lives"]
    return {
        "projects": phase["projects"],
        "seconds": phase["seconds"],
        "wall_s": phase["wall_s"],
        "finished_in_time": phase["finished_in_time"],
        "node_lives": len(lives),
        "probes": phase["probes"],
        "probe_leases": phase["probe_leases"],
        **account,
    }


def show(result: dict[str, Any]) -> None:
    chaos, calm, kills = result["chaos"], result["calm"], result["kills"]
    console.print(
        f"[bold]chaos soak[/bold]: {result['projects']} projects, {result['chunks']} chunks; "
        f"{kills['server']} server and {kills['node']} node kills survived "
        f"({kills['node_with_blender_session']} took a Blender session down with them); "
        f"{result['rerendered_because_node_died']} chunk renders redone because their node died"
    )
    console.print(
        f"wall time: chaos {chaos['wall_s']} s, calm {calm['wall_s']} s "
        f"(x{result['wall_chaos_vs_calm']}); load average {result['loadavg_before'][0]} before, "
        f"{result['loadavg_after_chaos'][0]} after the chaos, "
        f"{result['loadavg_after'][0]} at the end"
    )
    for name, check in result["checks"].items():
        mark = "[green]ok[/green]" if check["ok"] else "[red]FAILED[/red]"
        console.print(f"  {mark} {name}")
        for line in check["found"][:5]:
            console.print(f"      {line}")


if __name__ == "__main__":
    sys.exit(main())
