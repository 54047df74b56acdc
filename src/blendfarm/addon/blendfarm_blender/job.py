"""A submission running in the background: `blendfarm addon submit` as a subprocess whose JSON
lines are read by a thread, so Blender's interface never waits on packing or uploading.

Plain Python, no bpy: the panel's timer drains `events()`; `blender -b` iterates `follow()`.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

STDERR_KEPT = 40


class SubmitJob:
    """One `blendfarm addon submit` run and what it said so far."""

    def __init__(self, args: list[str], cwd: str | None = None):
        self.args = args
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self.finished = False
        self.cancelled = False
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                cwd=cwd,
                env=_environment(),
                start_new_session=True,
            )
        except OSError as exc:
            raise OSError(f"cannot run {args[0]}: {exc.strerror or exc}") from None
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "output", "line": line}
            if isinstance(event, dict):
                self._events.put(event)
        self.proc.wait()
        self._err.join(timeout=5)
        self._events.put(self._ending())
        self._events.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr = (self._stderr + [line.rstrip()])[-STDERR_KEPT:]

    def _ending(self) -> dict[str, Any]:
        code = self.proc.returncode
        if code == 0:
            return {"event": "exit", "code": 0}
        if self.cancelled:
            return {"event": "exit", "code": code, "message": "the upload was cancelled"}
        said = [line for line in self._stderr if line.strip()]
        message = said[-1] if said else f"{self.args[0]} exited with code {code}"
        if message.lower().startswith("error: "):
            message = message[len("error: ") :]
        return {"event": "exit", "code": code, "message": message}

    def events(self) -> list[dict[str, Any]]:
        """Every event since the last call, without waiting."""
        found: list[dict[str, Any]] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return found
            if event is None:
                self.finished = True
                return found
            found.append(event)

    def follow(self) -> Iterator[dict[str, Any]]:
        """Every event until the run ends (blocking)."""
        while not self.finished:
            event = self._events.get()
            if event is None:
                self.finished = True
                return
            yield event

    def cancel(self) -> None:
        """Stop packing or uploading; the server keeps nothing of an unfinished upload."""
        self.cancelled = True
        if self.proc.poll() is None:
            self.proc.terminate()


def _environment() -> dict[str, str]:
    """Blender's environment without what points Python at Blender's own interpreter."""
    env = dict(os.environ)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env
