"""A whole farm for one measurement: a real `blendfarm serve` and real `blendfarm node`s on
127.0.0.1 in a temporary dir, projects submitted with the real CLI and followed to `done`.

The wall time of a project runs from the start of `blendfarm submit` until
GET /api/projects/{id} reads `done`: packing and upload, the nodes picking it up, the probe,
every render, stitching and (animations) the mp4.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from common import BLENDFARM, NodeProcess, Server, bench_env


class Farm:
    """Use as a context manager: the server starts on entry; nodes are added with
    `add_node`; everything is stopped on exit (nodes first)."""

    def __init__(self, tmp: Path, server_env: dict[str, str] | None = None):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.server = Server(tmp / "data", tmp / "server.log", env=server_env)
        self.nodes: list[NodeProcess] = []
        self.renders: Counter[str] = Counter()  # chunk renders started, per node
        self._lock = threading.Lock()
        self.client: httpx.Client | None = None
        self.stop_s: float | None = None

    def __enter__(self) -> Farm:
        try:
            self.server.start()
        except BaseException:
            self.server.stop()
            raise
        self.client = httpx.Client(base_url=self.server.url, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        began = time.monotonic()
        for node in self.nodes:
            node.terminate()  # all at once: each finishes its own way out
        for node in self.nodes:
            node.stop(timeout=30)
        if self.client is not None:
            self.client.close()
        self.server.stop()
        self.stop_s = round(time.monotonic() - began, 2)
        if self.stop_s > 5:
            print(f"  (the farm took {self.stop_s} s to stop)", flush=True)

    def _line(self, name: str, life: int, when: float, line: str) -> None:
        if "rendering " in line and " chunk " in line:
            with self._lock:
                self.renders[name] += 1

    def add_node(self, name: str, extra: list[str], nice: int = 0) -> NodeProcess:
        """Start `blendfarm node --name NAME EXTRA...`; `nice` lowers its priority (and its
        Blender's, which it starts later and which inherits it)."""
        node = NodeProcess(
            name,
            self.server.url,
            self.tmp / f"work-{name}",
            self.tmp / f"node-{name}.log",
            extra,
            on_line=self._line,
        )
        node.start()
        self.nodes.append(node)
        if nice and node.proc is not None:
            os.setpriority(os.PRIO_PROCESS, node.proc.pid, nice)
        return node

    def wait_nodes(self, count: int, timeout: float = 120.0) -> None:
        """Wait until `count` nodes are online (registered, Blender found)."""
        assert self.client is not None
        deadline = time.monotonic() + timeout
        online = 0
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.running:
                    raise RuntimeError(f"node {node.name} exited: see {node.log_path}")
            nodes = self.client.get("/api/nodes").json()
            online = sum(1 for n in nodes if n.get("online"))
            if online >= count:
                return
            time.sleep(0.2)
        raise RuntimeError(f"only {online} of {count} nodes came online in {timeout:g} s")

    def submit(self, project: Path, blend: str, options: list[str]) -> str:
        """`blendfarm submit PROJECT --blend BLEND OPTIONS --json`; the project's id."""
        cmd = [BLENDFARM, "--server", self.server.url, "submit", str(project), "--blend", blend]
        proc = subprocess.run(
            [*cmd, *options, "--json"],
            env=bench_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"submit exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        out = proc.stdout
        pid: str = json.loads(out[out.index("{") :])["id"]
        return pid

    def wait_done(self, pid: str, timeout: float) -> dict[str, Any]:
        """Poll the project every 50 ms until `done`; raises when it ends otherwise."""
        assert self.client is not None
        view: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.client.get(f"/api/projects/{pid}").json()
            if view.get("state") in ("done", "error", "cancelled"):
                break
            time.sleep(0.05)
        if view.get("state") != "done":
            raise RuntimeError(
                f"project {pid} is {view.get('state')} after {timeout:g} s: {view.get('error')}"
            )
        for node in self.nodes:
            if not node.running:
                raise RuntimeError(f"node {node.name} exited: see {node.log_path}")
        return view

    def render_project(
        self, project: Path, blend: str, options: list[str], timeout: float
    ) -> dict[str, Any]:
        """Submit and wait: the wall time (submit start -> done) and what the farm did."""
        with self._lock:
            before = Counter(self.renders)
        started = time.perf_counter()
        pid = self.submit(project, blend, options)
        view = self.wait_done(pid, timeout)
        wall = time.perf_counter() - started
        time.sleep(0.1)  # the render lines of the nodes' last chunks
        with self._lock:
            renders = dict(self.renders - before)
        return {
            "project": pid,
            "wall_s": round(wall, 3),
            "chunks": view.get("chunks_total"),
            "result_type": view.get("result_type"),
            "renders_by_node": renders,
        }
