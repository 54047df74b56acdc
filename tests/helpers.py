"""Shared test helpers: Blender scenes, free ports, real farm processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from blendfarm.archive import zip_folder as zip_folder  # tests import it from here

HERE = Path(__file__).resolve().parent
MAKE_SCENE = HERE / "make_scene.py"
TOKEN = "test-node-token"
PASSWORD = "test-admin-password"


def require_blender() -> str:
    """Blender's path; a missing Blender fails in CI and skips elsewhere."""
    path = shutil.which("blender")
    if path is None:
        missing("Blender is not installed (apt-get install blender)")
    assert path is not None
    return path


def missing(what: str) -> None:
    """Something a test needs is not here: that fails the run in CI and skips it elsewhere."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(what)


def make_scene(blender: str, kind: str, out: Path, **opts: object) -> Path:
    """Build a .blend with tests/make_scene.py inside real Blender."""
    args = [f"{k}={v}" for k, v in opts.items()]
    proc = subprocess.run(
        [
            blender,
            "-b",
            "--factory-startup",
            "--python",
            str(MAKE_SCENE),
            "--",
            kind,
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def make_project(blender: str, folder: Path, **opts: object) -> Path:
    """A project folder: scene.blend, lib/lib.blend (linked), textures/checker.png."""
    make_scene(blender, "library", folder / "lib" / "lib.blend")
    return make_scene(blender, "project", folder / "scene.blend", **opts)


def render_direct(blender: str, blend: Path, frame: int, out: Path) -> Path:
    """One plain Blender render of a whole frame, the reference for stitched results."""
    script = (
        f"import bpy; s=bpy.context.scene; s.frame_set({frame}); "
        "s.render.image_settings.file_format='PNG'; bpy.ops.render.render(); "
        f"bpy.data.images['Render Result'].save_render(filepath={str(out)!r}, scene=s)"
    )
    proc = subprocess.run(
        [blender, "-b", str(blend), "--python-expr", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), proc.stdout[-2000:]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BLENDFARM = [sys.executable, "-m", "blendfarm"]


class FarmProcesses:
    """A real `blendfarm serve` and any number of `blendfarm node` processes."""

    def __init__(self, root: Path, node_timeout: float = 60.0, serve_args: tuple[str, ...] = ()):
        self.root = root
        self.api_port = free_port()
        self.ui_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.node_timeout = node_timeout
        self.serve_args = serve_args
        self.server: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(
            os.environ,
            BLENDFARM_TOKEN=TOKEN,
            BLENDFARM_PASSWORD=PASSWORD,
            BLENDFARM_SERVER=self.url,
            COLUMNS="200",
            XDG_CONFIG_HOME=str(root / "config"),  # owner keys the CLI keeps stay in the test
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start_server(self, wait: bool = True) -> None:
        log = open(self.root / "serve.log", "ab")
        self.server = subprocess.Popen(
            [
                *BLENDFARM,
                "serve",
                "--host",
                "127.0.0.1",
                "--api-port",
                str(self.api_port),
                "--ui-port",
                str(self.ui_port),
                "--data",
                str(self.root / "data"),
                "--node-timeout",
                str(self.node_timeout),
                *self.serve_args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_up()

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.server is not None and self.server.poll() is None, self.log("serve")
            try:
                if self.client.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not come up\n" + self.log("serve"))

    def start_node(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"node-{name}.log", "ab")
        proc = subprocess.Popen(
            [
                *BLENDFARM,
                "node",
                "--name",
                name,
                "--work-dir",
                str(self.root / f"work-{name}"),
                *extra,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.nodes[name] = proc
        return proc

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*BLENDFARM, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def submit(self, path: Path, *args: str, blend: str = "scene.blend") -> str:
        """Submit through the real CLI; the new project's id."""
        out = self.cli("submit", str(path), "--blend", blend, "--json", *args)
        return str(json.loads(out.stdout)["id"])

    def project(self, pid: str) -> dict:
        return self.client.get(f"/api/projects/{pid}").json()

    def wait_state(self, pid: str, states: set[str], timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        p: dict = {}
        while time.monotonic() < deadline:
            try:
                p = self.project(pid)
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            if p.get("state") in states:
                return p
            time.sleep(0.3)
        raise AssertionError(f"project {pid} stuck in {p.get('state')}: {p}\n{self.logs()}")

    def log(self, which: str) -> str:
        path = self.root / f"{which}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def children(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """Direct child processes of `proc` (the node's Blender)."""
        found: list[int] = []
        for children in Path(f"/proc/{proc.pid}/task").glob("*/children"):
            found += [int(x) for x in children.read_text().split()]
        return found

    def wait_node_rendering(self, name: str, kind: str = "chunk", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.client.get("/api/nodes").json():
                if n["name"] == name and n["current"] and n["current"]["kind"] == kind:
                    return n
            time.sleep(0.1)
        raise AssertionError(f"node {name} never rendered a {kind}\n{self.logs()}")

    def stop_node(self, name: str, sig: int = signal.SIGTERM) -> None:
        self._stop(self.nodes[name], sig)

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None:
            self._stop(self.server, sig)

    def close(self) -> None:
        for proc in self.nodes.values():
            self._stop(proc)
        self.stop_server()
        self.client.close()


@contextmanager
def running_farm(root: Path, **options: Any) -> Iterator[FarmProcesses]:
    """A real server on free ports (no nodes yet), stopped with everything it started."""
    farm = FarmProcesses(root, **options)
    farm.start_server()
    try:
        yield farm
    finally:
        farm.close()


@contextmanager
def full_disk(folder: Path) -> Iterator[Callable[[], None]]:
    """Mount a 4 KiB tmpfs on `folder` and fill it; yields a function that frees it early.

    Needs root (CI runs as root); without it the test fails in CI and skips elsewhere.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        missing(f"mounting a small tmpfs needs root: {mounted.stderr.strip()}")
    with contextlib.suppress(OSError):
        (folder / "filler").write_bytes(bytes(64 * 1024))
    state = {"mounted": True}

    def free() -> None:
        if state["mounted"]:
            subprocess.run(["umount", "-l", str(folder)], check=True)
            state["mounted"] = False

    try:
        yield free
    finally:
        free()
