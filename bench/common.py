"""Shared by the bench scripts: a real `blendfarm serve` subprocess on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import httpx

VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
BLENDFARM = str(VENV_BIN / "blendfarm")
TOKEN = "bench-token"
PASSWORD = "bench-pw"
RESULTS = Path(__file__).resolve().parent / "results"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds (user + system) of process `root` and its live descendants, with the
    children each has reaped; None when `root` is gone."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    ticks, total, found = os.sysconf("SC_CLK_TCK"), 0, False
    for pid in tree:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        found = found or pid == root
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # own and reaped children's
    return total / ticks if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_env() -> dict[str, str]:
    env = dict(os.environ, BLENDFARM_TOKEN=TOKEN, BLENDFARM_PASSWORD=PASSWORD)
    for key in ("BLENDFARM_SERVER", "BLENDFARM_DATA", "BLENDFARM_WORK_DIR", "BLENDFARM_NAME"):
        env.pop(key, None)
    return env


class Server:
    """`blendfarm serve` on 127.0.0.1 with its own data dir; use as a context manager."""

    def __init__(
        self,
        data: Path,
        log_path: Path,
        extra: list[str] | None = None,
        own_session: bool = False,
        env: dict[str, str] | None = None,
    ):
        """`own_session`: start it in a session of its own, so that `kill()` takes its
        children (ffmpeg) with it and a Ctrl-C on the bench does not reach it directly.
        `env`: more environment variables for it (server settings such as BLENDFARM_X=1)."""
        self.env = dict(env or {})
        self.data = data
        self.log_path = log_path
        self.api_port = free_port()
        self.ui_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.extra = extra or []
        self.own_session = own_session
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None
        self._started = False  # a restart appends to the log

    def start(self, timeout: float = 30.0) -> None:
        """Start it (again: same ports and data dir, the log appended to) and wait for
        /api/health."""
        cmd = [
            BLENDFARM,
            "serve",
            "--host",
            "127.0.0.1",
            "--api-port",
            str(self.api_port),
            "--ui-port",
            str(self.ui_port),
            "--data",
            str(self.data),
            *self.extra,
        ]
        self._close_log()
        self._log = open(self.log_path, "ab" if self._started else "wb")
        self._started = True
        self.proc = subprocess.Popen(
            cmd,
            env={**bench_env(), **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /api/health in {timeout:g} s")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time so far of the server process and every process under it
        (its stitching worker and fork server, its ffmpeg encoders; children it reaped
        count too), from Linux /proc."""
        if self.proc is None:
            return None
        return tree_cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=10)
        elif self.proc is not None:
            code = self.proc.returncode
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL, with its process group when it has its own session; waits for it."""
        if self.proc is not None:
            kill_now(self.proc)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_pids(pid: int) -> list[int]:
    """The direct children of process `pid` (Linux /proc); [] when it is gone."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(x) for x in children.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def kill_now(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL `proc` and the process groups of its children that lead their own (a node's
    Blender runs in a session of its own), then its own group when it leads one; waits for it.

    The process is frozen with SIGSTOP first, so it cannot start a child while its children
    are looked up. Returns how many children's groups were killed.
    """
    if proc.poll() is not None:
        return 0
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        own_group = os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        proc.wait()
        return 0
    groups: set[int] = set()
    for child in child_pids(proc.pid):
        try:
            group = os.getpgid(child)
        except ProcessLookupError:
            continue
        if group == child:  # a group of its own: Blender (start_new_session)
            groups.add(group)
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        if own_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()
    wait_dead(groups)
    return len(groups)


def wait_dead(pids: set[int] | list[int], timeout: float = 5.0) -> bool:
    """Wait until every one of `pids` is gone or a zombie; False when one is still alive."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left:
        for pid in list(left):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                state = "Z"
            if state in ("Z", "X"):
                left.discard(pid)
        if not left:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def ancestors() -> set[int]:
    """This process and every process above it (a `timeout` wrapper names our options too)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def kill_strays(marker: str) -> list[str]:
    """SIGKILL every process (but this one and its ancestors) whose command line holds
    `marker`, e.g. the bench's own temporary dir, which no other process names. Returns
    "pid: command line" of each."""
    killed = []
    spare = ancestors()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        if pid in spare:
            continue
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker not in command:
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid}: {command.strip()[:300]}")
        except OSError:
            continue
    return killed


class NodeProcess:
    """`blendfarm node` in a session of its own; every line it prints is written to its log
    with the wall time it arrived (`time.time()`, like the server's records) and handed to
    `on_line(node name, life, time, line)`. `start()` again after `kill()` is its next life:
    same name, same work dir, same log (appended to)."""

    def __init__(
        self,
        name: str,
        server_url: str,
        work: Path,
        log_path: Path,
        extra: Sequence[str] = (),
        on_line: Callable[[str, int, float, str], None] | None = None,
    ):
        self.name = name
        self.server_url = server_url
        self.work = work
        self.log_path = log_path
        self.extra = list(extra)
        self.on_line = on_line
        self.life = 0
        self._terminated = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.life += 1
        env = bench_env()
        env["COLUMNS"] = "200"  # the node's console must not wrap its lines
        self.proc = subprocess.Popen(
            [
                BLENDFARM,
                "--server",
                self.server_url,
                "node",
                "--name",
                self.name,
                "--work-dir",
                str(self.work),
                *self.extra,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self.proc, self.life), name=f"log-{self.name}", daemon=True
        )
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes], life: int) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{time.time():.3f} === life {life} of {self.name} (pid {proc.pid})\n")
            for raw in proc.stdout:
                now = time.time()
                line = raw.decode(errors="replace").rstrip()
                log.write(f"{now:.3f} {line}\n")
                log.flush()
                if self.on_line is not None:
                    self.on_line(self.name, life, now, line)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> int:
        """SIGKILL the node and its Blender's process group; how many groups besides its own."""
        killed = 0 if self.proc is None else kill_now(self.proc)
        self._join()
        return killed

    def terminate(self) -> None:
        """SIGTERM, once per life (a second one would make the node kill Blender at once)."""
        if self.proc is not None and self.proc.poll() is None and self._terminated != self.life:
            self._terminated = self.life
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the node hands its chunk back), SIGKILL after `timeout`; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_now(self.proc)
        self._join()
        return self.proc.returncode

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)


def loadavg() -> float | None:
    """The 1-minute load average (other work on the machine skews every number)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


def loadavgs() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def machine() -> dict[str, object]:
    """What the numbers were measured on: CPU model, cores, RAM (Linux /proc)."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": ram_gib}


def stop_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so that a bench stopped by `make bench`'s time
    limit still stops the farm it started (its `with` blocks run)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
