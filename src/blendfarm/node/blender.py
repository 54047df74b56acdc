"""Blender as a subprocess: one render session per .blend, kept warm between chunks.

`Renderer` is the one small interface the node uses. A `BlenderSession` is a running
`blender -b FILE --python blender_script.py` (or, for the `bpy` module, a child Python
running bpy_session.py, which runs the same script) that takes JSON commands on stdin; a warm
renderer keeps it for the next chunk of the same file, a cold one closes it after each.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..errors import BlenderFailed, BlendfarmError
from .devices import Device

SCRIPT = Path(__file__).with_name("blender_script.py")
BPY_SESSION = Path(__file__).with_name("bpy_session.py")
MARKER = "@@BLENDFARM@@"
TAIL_LINES = 40
BPY = "bpy"
"""`--blender bpy`: the bpy module in the node's own Python, run in a child interpreter."""
BPY_MISSING = "the bpy module is not installed here: pip install 'blendfarm[blender]'"
LogSink = Callable[[str], None]


def session_command(
    executable: str, blend: Path | None, options: list[str], threads: int = 0
) -> list[str]:
    """How to start a session: on `blend`, or without a file (`--list-devices`)."""
    trusted = "--trust-scripts" in options
    files = [str(blend)] if blend is not None else []
    if executable == BPY:
        # -P: the working folder (a project's files) is not on its import path.
        pool = ["--threads", str(threads)] if threads > 0 else []  # bpy's `-t` (bpy_session)
        return [sys.executable, "-P", str(BPY_SESSION), *pool, *files, "--", *options]
    # No Python from the submitted file runs unless the node's owner trusts it: neither
    # registered text blocks nor Python drivers (whatever the user's preferences say);
    # blender_script.py turns off Freestyle's Python style modules.
    autoexec = "--enable-autoexec" if trusted else "--disable-autoexec"
    cmd = [executable, "-b", "-noaudio", autoexec]
    cmd += files or ["--factory-startup"]
    cmd += ["--python", str(SCRIPT), "--", *options]
    if threads > 0:
        cmd[1:1] = ["-t", str(threads)]
    return cmd


def bpy_version() -> str:
    """The version of the bpy module the node's Python has, asked in a child; '' if none."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-P",
                "-c",
                "import bpy; print('Blender', bpy.app.version_string)",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"^Blender (\d+\.\d+(?:\.\d+)?)", done.stdout, re.M)
    return m.group(1) if done.returncode == 0 and m else ""


def find_blender(explicit: str = "") -> str:
    """The Blender to use: the one given (a path, a name on PATH, or `bpy`), else `blender`
    on PATH."""
    if explicit == BPY:
        if not bpy_version():
            raise BlendfarmError(BPY_MISSING)
        return BPY
    candidate = explicit or "blender"
    path = shutil.which(candidate) if os.sep not in candidate else candidate
    if not path or not os.access(path, os.X_OK):
        raise BlendfarmError(
            f"Blender not found ({candidate!r}): install it (apt-get install blender) "
            "or pass --blender PATH"
        )
    return path


def blender_version(executable: str) -> str:
    """The version Blender reports, e.g. '3.4.1'; the bpy module's is '5.0.1 (bpy)'."""
    if executable == BPY:
        version = bpy_version()
        if not version:
            raise BlendfarmError(BPY_MISSING)
        return f"{version} (bpy)"
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlendfarmError(f"cannot run {executable}: {exc}") from None
    m = re.search(r"Blender (\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise BlendfarmError(f"{executable} does not look like Blender: {out.strip()[:200]!r}")
    return m.group(1)


def list_devices(executable: str) -> list[dict[str, Any]]:
    """The GPUs this Blender's Cycles reports (see blender_script.list_devices)."""
    cmd = session_command(executable, None, ["--list-devices"])
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlendfarmError(f"cannot ask Blender for its devices: {exc}") from None
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            try:
                answer = json.loads(line[len(MARKER) :])
            except json.JSONDecodeError:
                break
            if answer.get("ok"):
                return list(answer["devices"])
            raise BlendfarmError(f"Blender could not list its devices: {answer.get('error')}")
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    raise BlendfarmError(f"Blender did not list its devices: {tail[0]}")


class Renderer(Protocol):
    """What the node needs from Blender."""

    def probe(self, blend: Path) -> dict[str, Any]: ...

    def render(self, blend: Path, command: dict[str, Any]) -> Path: ...

    def finish(self, blend: Path, command: dict[str, Any]) -> Path:
        """Denoise and composite a whole frame from its passes (see blender_finish.py)."""
        ...

    def abort(self, polite: bool = False) -> None:
        """Stop every Blender now, from any thread (SIGTERM when `polite`, else SIGKILL).

        Must never wait on a lock another thread may hold for long.
        """
        ...

    def close(self) -> None: ...


class BlenderSession:
    """A running Blender that renders on command."""

    def __init__(
        self,
        executable: str,
        blend: Path,
        log: LogSink,
        threads: int = 0,
        trust_scripts: bool = False,
    ):
        self.blend = blend
        self.log = log
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        options = ["--trust-scripts"] if trust_scripts else []
        cmd = session_command(executable, blend, options, threads)
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                cwd=blend.parent,
                start_new_session=True,  # its own process group: we kill it whole
            )
        except OSError as exc:
            raise BlenderFailed(f"cannot start Blender: {exc}") from None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(MARKER):
                try:
                    self._answers.put(json.loads(line[len(MARKER) :]))
                except json.JSONDecodeError:
                    self._answers.put({"ok": False, "error": "garbled answer from Blender"})
                continue
            self.tail.append(line)
            self.log(line)
        self._answers.put(None)  # Blender is gone

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one command and wait for its answer; BlenderFailed on error, exit or timeout."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._reader.join(timeout=5)
            raise BlenderFailed(self._exit_message(), list(self.tail)) from None
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise BlenderFailed(
                f"Blender did not finish within {timeout:g} s and was stopped", list(self.tail)
            ) from None
        if answer is None:
            raise BlenderFailed(self._exit_message(), list(self.tail))
        if not answer.get("ok"):
            raise BlenderFailed(str(answer.get("error", "Blender failed")).strip(), list(self.tail))
        return answer

    def _exit_message(self) -> str:
        code = self.proc.wait(timeout=30)
        errors = [ln for ln in self.tail if re.search(r"error|unable|cannot|failed", ln, re.I)]
        detail = errors[-1] if errors else (self.tail[-1] if self.tail else "no output")
        how = f"signal {-code}" if code < 0 else f"code {code}"
        return f"Blender exited ({how}): {detail.strip()}"

    def signal(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to Blender's whole process group; safe from any thread, never blocks."""
        if self.proc.returncode is None:  # not reaped yet, so its pid is still its own
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def kill(self) -> None:
        if self.alive:
            self.signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        if self.alive:
            try:
                self.ask({"op": "quit"}, timeout=10)
            except BlenderFailed:
                pass
        self.kill()


class SessionRenderer:
    """Renders through Blender sessions; `warm` keeps one open per .blend between chunks.

    `_lock` only guards which session is current and is never held while Blender starts,
    answers or quits; `abort` takes neither it nor any lock held for long: it signals the
    process groups of every session still running (`_running`), from any thread.
    """

    def __init__(
        self,
        executable: str,
        log: LogSink,
        threads: int = 0,
        warm: bool = True,
        timeout: float = 3600.0,
        trust_scripts: bool = False,
        device: Device | None = None,
    ):
        self.executable = executable
        self.device = device
        self.log = log
        self.threads = threads
        self.warm = warm
        self.timeout = timeout
        self.trust_scripts = trust_scripts
        self._session: BlenderSession | None = None
        self._lock = threading.Lock()
        self._running: set[BlenderSession] = set()
        self._running_lock = threading.Lock()  # held for a set operation, never longer

    def _session_for(self, blend: Path) -> BlenderSession:
        with self._lock:
            old = self._session
            if old is not None and old.blend == blend and old.alive:
                return old
            self._session = None
        if old is not None:
            self._end(old, quit=True)
        session = BlenderSession(self.executable, blend, self.log, self.threads, self.trust_scripts)
        with self._running_lock:
            self._running.add(session)
        with self._lock:
            self._session = session
        return session

    def _end(self, session: BlenderSession, quit: bool) -> None:
        """Close (ask Blender to quit) or kill one session and forget it."""
        if quit:
            session.close()
        else:
            session.kill()
        with self._running_lock:
            self._running.discard(session)

    def _done(self, session: BlenderSession, failed: bool) -> None:
        if failed or not self.warm:
            with self._lock:
                if self._session is session:
                    self._session = None
            self._end(session, quit=not failed)

    def _run(self, blend: Path, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        session = self._session_for(blend)
        try:
            answer = session.ask(command, timeout)
        except BlenderFailed:
            self._done(session, failed=True)
            raise
        self._done(session, failed=False)
        return answer

    def probe(self, blend: Path) -> dict[str, Any]:
        probe: dict[str, Any] = self._run(blend, {"op": "probe"}, min(self.timeout, 600))["probe"]
        return probe

    def render(self, blend: Path, command: dict[str, Any]) -> Path:
        """Render one chunk; `command["timeout"]` (seconds) overrides the renderer's limit."""
        started = time.monotonic()
        command = dict(command)
        timeout = float(command.pop("timeout", None) or self.timeout)
        device = self.device.command() if self.device is not None else None
        answer = self._run(blend, {"op": "render", "device": device, **command}, timeout)
        on = answer.get("device") or "?"
        self.log(f"blendfarm: chunk rendered in {time.monotonic() - started:.1f} s on {on}")
        return Path(answer["output"])

    def finish(self, blend: Path, command: dict[str, Any]) -> Path:
        """Finish one frame from its passes; `command["timeout"]` as for `render`."""
        started = time.monotonic()
        command = dict(command)
        timeout = float(command.pop("timeout", None) or self.timeout)
        answer = self._run(blend, {"op": "finish", **command}, timeout)
        self.log(f"blendfarm: frame finished in {time.monotonic() - started:.1f} s")
        return Path(answer["output"])

    def abort(self, polite: bool = False) -> None:
        """Stop every Blender of this renderer at once (the node stops, or lost its lease).

        Signals each process group directly, so it never waits for a session being started,
        asked or closed on another thread; that thread sees Blender gone and cleans up.
        """
        with self._running_lock:
            running = list(self._running)
        for session in running:
            session.signal(signal.SIGTERM if polite else signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            session = self._session
            self._session = None
        if session is not None:
            self._end(session, quit=True)
