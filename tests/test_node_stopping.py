"""Stopping a node: SIGTERM at any moment ends it within 5 s, its task handed back, no Blender left.

The unit tests drive the stop machinery in this process; the others send signals to real
`blendfarm node` processes (real server, real Blender) at each moment of their work, found by
watching the node's log and work dir, never by sleeping blind. The server's node timeout is
long (60 s), so a task the server shows free again was handed back, not expired.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blendfarm.client import Stopped
from blendfarm.node.devices import FAKE_ENV
from blendfarm.node.stopping import GRACE, StopGuard, StopRequest, interruptible
from helpers import FarmProcesses, make_project, running_farm, zip_folder

EXIT_WITHIN = 5.0  # seconds from SIGTERM to the node's exit, whatever it was doing

# -- the machinery, in this process ------------------------------------------------------


def test_interruptible_gives_the_steps_result_or_its_error() -> None:
    stop = threading.Event()
    assert interruptible(lambda: 42, stop) == 42

    def fails() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        interruptible(fails, stop)


def test_interruptible_walks_away_from_a_step_that_never_ends_once_stopped() -> None:
    stop = threading.Event()
    never = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopped):
        interruptible(lambda: never.wait(), stop)
    never.set()


@pytest.fixture
def request_installed() -> Iterator[StopRequest]:
    """A StopRequest that owns SIGTERM and SIGINT of this process for the test."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    request = StopRequest()
    request.install()
    try:
        yield request
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        request.close()


def test_signals_only_raise_flags_first_soon_then_now(request_installed: StopRequest) -> None:
    request = request_installed
    os.kill(os.getpid(), signal.SIGTERM)
    request.wait(10)  # the handler's byte wakes a waiter at once
    assert (request.soon, request.now) == (True, False)
    os.kill(os.getpid(), signal.SIGINT)
    assert (request.soon, request.now) == (True, True)


def test_the_guard_asks_blender_politely_then_kills_it_on_a_second_request() -> None:
    request = StopRequest()
    calls: list[str] = []
    polite_seen, hard_seen = threading.Event(), threading.Event()

    def kill(polite: bool) -> None:
        calls.append("term" if polite else "kill")
        (polite_seen if polite else hard_seen).set()

    guard = StopGuard(request, lambda: calls.append("soon"), lambda: calls.append("now"), kill)
    guard.start()
    try:
        request.ask()
        assert polite_seen.wait(10)
        assert not hard_seen.is_set()  # the grace has not passed: only SIGTERM so far
        request.ask()
        assert hard_seen.wait(10)
    finally:
        guard.finish()
        request.close()
    assert calls[:2] == ["soon", "term"]
    assert calls.index("now") < calls.index("kill")


# -- real processes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_zip(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chunk that renders for far longer than any of these tests waits (single thread)."""
    folder = tmp_path_factory.mktemp("slow")
    make_project(blender, folder, samples=3000, width=121, height=91)
    return zip_folder(folder, tmp_path_factory.mktemp("slowzip") / "slow.zip")


@pytest.fixture(scope="module")
def quick_folder(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quick")
    make_project(blender, folder, samples=8, width=41, height=31)
    return folder


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[FarmProcesses]:
    with running_farm(tmp_path, node_timeout=60) as farm:
        yield farm


def submit(farm: FarmProcesses, path: Path, *args: str) -> str:
    return farm.submit(path, *args)


def wait_for(
    what: str, farm: FarmProcesses, check: Callable[[], object], timeout: float = 180
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}\n{farm.logs()}")


def node_said(farm: FarmProcesses, name: str, text: str) -> bool:
    return text in farm.log(f"node-{name}")


def processes_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time used by process `pid` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def blender_rendering(farm: FarmProcesses, name: str) -> list[int]:
    """The node's Blender once it has spent a few seconds of CPU (so it renders, not loads)."""
    farm.wait_node_rendering(name)
    node = farm.nodes[name]
    busy = wait_for(
        "Blender to be busy rendering",
        farm,
        lambda: [c for c in farm.children(node) if cpu_seconds(c) > 3.0],
    )
    assert isinstance(busy, list)
    return busy


def sigterm_and_time(farm: FarmProcesses, name: str) -> int:
    """SIGTERM the node; it must exit within EXIT_WITHIN seconds. Returns its exit code."""
    proc = farm.nodes[name]
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=EXIT_WITHIN)
    except Exception:
        raise AssertionError(
            f"the node did not exit within {EXIT_WITHIN} s of SIGTERM\n{farm.logs()}"
        ) from None


def handed_back(farm: FarmProcesses, name: str, pid: str) -> dict:
    """The node left holding nothing: no task of it rendering on the server."""
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes[name]["state"] == "offline" and nodes[name]["current"] is None, nodes[name]
    project = farm.project(pid)
    assert project["chunks_rendering"] == 0, project
    return project


def stubborn_blender(tmp_path: Path, blender: str) -> Path:
    """Real Blender started with SIGTERM ignored, as a Blender stuck in a syscall might be."""
    wrapper = tmp_path / "stubborn-blender"
    wrapper.write_text(f"#!/bin/sh\ntrap '' TERM\nexec {blender} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_while_rendering_hands_the_chunk_back_and_leaves_no_blender(
    farm: FarmProcesses, slow_zip: Path
) -> None:
    pid = submit(farm, slow_zip, "--frame", "1")
    farm.start_node("busy", "--threads", "1")
    groups = blender_rendering(farm, "busy")
    assert sigterm_and_time(farm, "busy") == 0
    assert all(processes_in_group(g) == [] for g in groups)
    project = handed_back(farm, "busy", pid)
    assert project["chunks_done"] == 0
    assert node_said(farm, "busy", "stopping: handing task")


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_hands_back_the_chunk_of_every_slot_and_leaves_no_blender(
    farm: FarmProcesses, slow_zip: Path
) -> None:
    pid = submit(farm, slow_zip, "--frame", "1", "--tiles", "2")
    farm.start_node("twin", "--threads", "1", env={FAKE_ENV: "CUDA:Fake A,CUDA:Fake B"})
    node = farm.nodes["twin"]
    busy = wait_for(
        "both slots' Blenders to be busy rendering",
        farm,
        lambda: (
            len(found := [c for c in farm.children(node) if cpu_seconds(c) > 3.0]) == 2 and found
        ),
    )
    assert isinstance(busy, list)
    assert farm.project(pid)["chunks_rendering"] == 2
    assert sigterm_and_time(farm, "twin") == 0
    assert all(processes_in_group(g) == [] for g in busy)
    project = handed_back(farm, "twin", pid)
    assert project["chunks_done"] == 0
    assert node_said(farm, "twin", "stopping: handing task")


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_ends_the_node_even_when_blender_ignores_it(
    farm: FarmProcesses, slow_zip: Path, blender: str, tmp_path: Path
) -> None:
    pid = submit(farm, slow_zip, "--frame", "1")
    wrapper = stubborn_blender(tmp_path, blender)
    farm.start_node("stubborn", "--threads", "1", "--blender", str(wrapper))
    groups = blender_rendering(farm, "stubborn")
    assert sigterm_and_time(farm, "stubborn") == 0  # SIGTERM, then SIGKILL after the grace
    assert all(processes_in_group(g) == [] for g in groups)
    handed_back(farm, "stubborn", pid)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_second_signal_kills_blender_at_once(
    farm: FarmProcesses, slow_zip: Path, blender: str, tmp_path: Path
) -> None:
    pid = submit(farm, slow_zip, "--frame", "1")
    wrapper = stubborn_blender(tmp_path, blender)
    node = farm.start_node("twice", "--threads", "1", "--blender", str(wrapper))
    groups = blender_rendering(farm, "twice")
    node.send_signal(signal.SIGTERM)
    wait_for("the first signal to be taken", farm, lambda: node_said(farm, "twice", "stopping:"))
    node.send_signal(signal.SIGINT)
    wait_for("the second signal", farm, lambda: node_said(farm, "twice", "stopping now"))
    # Blender ignores SIGTERM: only the second signal can end it before the grace runs out.
    wait_for(
        "Blender's process group to be gone",
        farm,
        lambda: all(processes_in_group(g) == [] for g in groups),
        timeout=GRACE / 2,
    )
    assert node.wait(timeout=EXIT_WITHIN) == 0
    handed_back(farm, "twice", pid)


class SlowLink:
    """A TCP proxy to the server that passes its answers on at `rate` bytes a second."""

    def __init__(self, port: int, rate: int):
        self.port, self.rate = port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            for src, dst, rate in ((client, server, 0), (server, client, self.rate)):
                threading.Thread(target=self._pump, args=(src, dst, rate), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: int) -> None:
        try:
            while data := src.recv(64 * 1024):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_while_downloading_the_project_hands_the_task_back(
    farm: FarmProcesses, quick_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    shutil.copytree(quick_folder, folder)
    (folder / "textures" / "noise.bin").write_bytes(os.urandom(24 * 1024**2))  # incompressible
    pid = submit(farm, zip_folder(folder, tmp_path / "big.zip"), "--frame", "1")
    link = SlowLink(farm.api_port, rate=2 * 1024**2)
    env = farm.env
    try:
        farm.env = dict(env, BLENDFARM_SERVER=link.url)
        node = farm.start_node("far")
        farm.env = env
        downloads = tmp_path / "work-far" / "downloads"
        wait_for(
            "the download to be under way",
            farm,
            lambda: any(p.stat().st_size > 1024**2 for p in downloads.glob("*.part")),
        )
        groups = farm.children(node)
        assert sigterm_and_time(farm, "far") == 0
    finally:
        farm.env = env
        link.close()
    assert all(processes_in_group(g) == [] for g in groups)
    handed_back(farm, "far", pid)
    # The probe it held is free at once: another node takes it and finishes the project.
    farm.start_node("near")
    assert farm.wait_state(pid, {"done", "error"}, timeout=120)["state"] == "done"


SLOW_QUIT = """#!{python}
# Real Blender behind a pipe that holds back the "quit" after a render: a session slow to close.
import os, subprocess, sys, time
args = sys.argv[1:]
if "-b" not in args:
    os.execv({blender!r}, [{blender!r}, *args])
blender = subprocess.Popen([{blender!r}, *args], stdin=subprocess.PIPE, text=True)
rendered = False
for line in sys.stdin:
    rendered = rendered or '"render"' in line
    if '"quit"' in line and rendered:
        open({marker!r}, "w").close()
        time.sleep(120)
    blender.stdin.write(line)
    blender.stdin.flush()
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_while_closing_a_cold_session_ends_the_node(
    farm: FarmProcesses, quick_folder: Path, blender: str, tmp_path: Path
) -> None:
    pid = submit(farm, zip_folder(quick_folder, tmp_path / "q.zip"), "--frame", "1", "--tiles", "2")
    marker = tmp_path / "closing"
    wrapper = tmp_path / "slow-quit-blender"
    wrapper.write_text(SLOW_QUIT.format(python=sys.executable, blender=blender, marker=str(marker)))
    wrapper.chmod(0o755)
    node = farm.start_node("cold", "--cold", "--threads", "1", "--blender", str(wrapper))
    wait_for("a session closing after a chunk", farm, marker.exists)
    groups = farm.children(node)
    assert groups, "the closing session should still be running"
    assert sigterm_and_time(farm, "cold") == 0
    assert all(processes_in_group(g) == [] for g in groups)
    project = handed_back(farm, "cold", pid)
    assert project["chunks_done"] == 1  # the chunk Blender had finished was still delivered
    farm.start_node("warm")
    done = farm.wait_state(pid, {"done", "error"}, timeout=120)
    assert done["state"] == "done" and done["chunks_done"] == 4, done


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_while_idle_ends_the_node(farm: FarmProcesses) -> None:
    farm.start_node("idle")
    wait_for("the node to register", farm, lambda: node_said(farm, "idle", "registered with"))
    assert sigterm_and_time(farm, "idle") == 0
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes["idle"]["state"] == "offline"
