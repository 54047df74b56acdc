"""Shared by the bench scripts: a real `blendfarm serve` subprocess on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx

VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
BLENDFARM = str(VENV_BIN / "blendfarm")
TOKEN = "bench-token"
PASSWORD = "bench-pw"
RESULTS = Path(__file__).resolve().parent / "results"


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

    def __init__(self, data: Path, log_path: Path, extra: list[str] | None = None):
        self.data = data
        self.log_path = log_path
        self.api_port = free_port()
        self.ui_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, timeout: float = 30.0) -> None:
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
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, env=bench_env(), stdout=self._log, stderr=subprocess.STDOUT
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
        """User + system CPU time of the server process so far (Linux /proc)."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

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
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
