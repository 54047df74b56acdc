"""The node's project cache: each project downloaded once, verified, unpacked safely.

Projects are kept by content hash (`projects/<content_sha>/`, complete once `.complete`
exists), the most recently used `PROJECTS_KEPT` of them. The content hash covers the files
and the .blend to render, not the zip: a project submitted again unchanged is neither
downloaded nor unpacked again, and its .blend has the same path, so the slot's warm Blender
keeps rendering it. (A server that sends no content hash: by the archive's sha256.)

Before a download and before an unpack the node checks its own disk: what the step writes
plus `DISK_RESERVE` must be free, or the task fails with a sentence saying so instead of
filling the disk.
"""

from __future__ import annotations

import shutil
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from ..archive import remove_tree, safe_extract
from ..client import ApiClient, Stopped
from ..errors import BlendfarmError
from ..protocol import Task

MAX_UNPACKED = 200 * 1024**3
PROJECTS_KEPT = 8  # unpacked projects a node keeps; older ones are downloaded again if needed
DISK_RESERVE = 1024**3  # bytes a node leaves free on its disk (a node setting later)
# What zipfile raises for an archive it cannot read: bad CRC or headers (BadZipFile), a broken
# deflate stream (zlib.error), a cut-off member (EOFError), an encrypted member (RuntimeError),
# an unknown compression method (NotImplementedError).
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError)


class ProjectCache:
    """Unpacked projects in `work/projects`, fetched through `client` when missing."""

    def __init__(
        self,
        work: Path,
        client: ApiClient,
        say: Callable[[str], None],
        stop: threading.Event,
        reserve: int = DISK_RESERVE,
    ):
        self.root = work / "projects"
        self.downloads = work / "downloads"
        self.marker = work / "server-id"
        self.client = client
        self.say = say
        self.stop = stop
        self.reserve = reserve
        self._lock = threading.Lock()  # the slots of a node share the cache: one fetch at a time

    def clean(self) -> None:
        """Drop what a node that was stopped mid-way left: partial downloads and unpacks."""
        for part in self.downloads.glob("*.part") if self.downloads.exists() else ():
            part.unlink(missing_ok=True)
        for staging in self.root.glob(".*.tmp") if self.root.exists() else ():
            remove_tree(staging)

    def server_is(self, server_id: str) -> None:
        """The server's identity; a different one (database purged) makes the cache stale."""
        old = self.marker.read_text().strip() if self.marker.exists() else ""
        if server_id and old and old != server_id:
            self.say("the server's identity changed: dropping cached projects")
            remove_tree(self.root)
        if server_id:
            self.marker.write_text(server_id)

    def folder(self, task: Task) -> Path:
        """The unpacked project of `task`, downloaded and verified once."""
        with self._lock:
            return self._folder(task)

    def _folder(self, task: Task) -> Path:
        sha = task.sha256
        key = content_key(task)
        if not sha.isalnum() or not key.isalnum():
            raise BlendfarmError("the server sent a bad project hash")
        folder = self.root / key
        if (folder / ".complete").exists():
            (folder / ".complete").touch()  # recently used: kept when the cache is trimmed
            return folder
        self.downloads.mkdir(parents=True, exist_ok=True)
        part = self.downloads / f"{sha}.zip.part"
        try:
            check_free_space(self.downloads, task.archive_size, self.reserve, "download")
            self.client.fetch_verified(
                task.archive_url, part, sha, f"project {task.project}", self._progress
            )
            self._unpack(part, folder)
        finally:
            part.unlink(missing_ok=True)
        self.say(f"project {task.project} downloaded ({task.archive_size} bytes)")
        trim_cache(self.root, keep=PROJECTS_KEPT)
        return folder

    def _progress(self, _done: int) -> None:
        if self.stop.is_set():
            raise Stopped()

    def _unpack(self, archive: Path, folder: Path) -> None:
        staging = self.root / f".{folder.name}.tmp"
        remove_tree(staging)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with zipfile.ZipFile(archive) as zf:
                unpacked = sum(info.file_size for info in zf.infolist())
            check_free_space(self.root, unpacked, self.reserve, "unpack")
            staging.mkdir(parents=True)
            safe_extract(archive, staging, MAX_UNPACKED)
            (staging / ".complete").touch()
            remove_tree(folder)
            staging.rename(folder)
        except DAMAGED as exc:
            raise BlendfarmError(f"the project archive is damaged: {exc}") from None
        finally:
            remove_tree(staging)


def content_key(task: Task) -> str:
    """What a task's project is kept and loaded by: its content hash, else its archive's."""
    return task.content_sha or task.sha256


def check_free_space(where: Path, needed: int, reserve: int, step: str) -> None:
    """BlendfarmError unless `needed` bytes fit on the disk of `where` with `reserve` left."""
    free = shutil.disk_usage(where).free
    if free - needed < reserve:
        raise BlendfarmError(
            f"the node's disk is too full to {step} the project: it needs {_size(needed)} "
            f"and keeps {_size(reserve)} free, but only {_size(free)} is free in {where}"
        )


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def trim_cache(folder: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` most recently used unpacked projects; returns those deleted."""
    done = sorted(
        (p for p in folder.iterdir() if (p / ".complete").exists()),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    for old in done[keep:]:
        remove_tree(old)
    return done[keep:]
