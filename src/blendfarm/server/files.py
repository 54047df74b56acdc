"""The data dir: where uploads, chunks, frames and results live.

Every path handed out is built from ids the server made (never from user text) and checked
to stay inside the data dir.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ..archive import remove_tree, tree_size
from ..errors import InsufficientStorage, NotFound
from ..formats import CHUNK_EXTENSIONS, CHUNK_KINDS, FRAME_EXTENSIONS, ChunkKind

MAX_REMEMBERED = 4096  # project folders remembered (forgotten all at once past it)


class DataDir:
    """Layout of the server's data dir."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self._folders: dict[str, Path] = {}  # project id -> its folder, checked once
        for sub in ("projects", "tmp", "blender"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for stale in (self.root / "tmp").iterdir():  # uploads cut off by a crash
            remove_tree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)

    @property
    def db_path(self) -> Path:
        return self.root / "blendfarm.db"

    def inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise NotFound("no such file")
        return resolved

    def project_dir(self, pid: str) -> Path:
        """A project's folder (checked to be inside the data dir once, then remembered: the
        chunk paths of every result are built from it)."""
        folder = self._folders.get(pid)
        if folder is None:
            if not pid.isalnum():
                raise NotFound(f"no project {pid!r}")
            folder = self.inside(self.root / "projects" / pid)
            if len(self._folders) >= MAX_REMEMBERED:
                self._folders.clear()
            self._folders[pid] = folder
        return folder

    def archive(self, pid: str) -> Path:
        return self.project_dir(pid) / "project.zip"

    def chunk(self, pid: str, frame: int, row: int, col: int, ext: str = "png") -> Path:
        """A chunk's file: `chunks/<frame>-<row>-<col>.<ext>`, ext png, exr or raw.exr (by its
        kind: formats.CHUNK_EXTENSIONS)."""
        return self.project_dir(pid) / "chunks" / f"{frame}-{row}-{col}.{ext}"

    def find_chunk(self, pid: str, frame: int, row: int, col: int) -> tuple[Path, ChunkKind]:
        """The stored file of a chunk whatever its kind, and the kind; NotFound when none."""
        for kind in CHUNK_KINDS:
            path = self.chunk(pid, frame, row, col, CHUNK_EXTENSIONS[kind])
            if path.is_file():
                return path, kind
        raise NotFound(f"chunk {frame}:{row}:{col} of project {pid} is not on the disk")

    def chunk_files(self, pid: str, frame: int, row: int, col: int) -> list[Path]:
        """Every stored file of a chunk (one, or none; more only while one replaces another)."""
        return [
            path
            for kind in CHUNK_KINDS
            if (path := self.chunk(pid, frame, row, col, CHUNK_EXTENSIONS[kind])).is_file()
        ]

    def frame(self, pid: str, frame: int, ext: str = "png") -> Path:
        """A final frame: `frames/<frame, 6 digits>.<ext>` (png, jpg, tif or exr)."""
        return self.project_dir(pid) / "frames" / f"{frame:06d}.{ext}"

    def find_frame(self, pid: str, frame: int) -> Path:
        """A final frame's file whatever its format; NotFound when there is none."""
        for ext in FRAME_EXTENSIONS:
            path = self.frame(pid, frame, ext)
            if path.is_file():
                return path
        raise NotFound(f"frame {frame} of project {pid} is not on the disk")

    def passes(self, pid: str, frame: int) -> Path:
        """The stitched raw passes of a frame (a multilayer EXR for its finish task)."""
        return self.project_dir(pid) / "frames" / f"{frame:06d}.passes.exr"

    def result(self, pid: str, ext: str) -> Path:
        """The project's result: `result.<ext>` (the still's format, or mp4)."""
        return self.project_dir(pid) / f"result.{ext}"

    def frames_zip(self, pid: str) -> Path:
        """An animation's final frames in the scene's format, as one zip."""
        return self.project_dir(pid) / "frames.zip"

    def raw(self, pid: str) -> Path:
        return self.project_dir(pid) / "raw.zip"

    def thumbnail(self, pid: str) -> Path:
        return self.project_dir(pid) / "thumbnail.png"

    def temp_file(self, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", suffix=suffix)
        os.close(fd)
        return Path(name)

    def adopt_upload(self, tmp: Path, pid: str) -> Path:
        """Move a checked upload into its project's folder."""
        folder = self.project_dir(pid)
        for sub in ("chunks", "frames"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        dest = self.archive(pid)
        os.replace(tmp, dest)
        return dest

    def delete_project(self, pid: str) -> int:
        folder = self.project_dir(pid)
        self._folders.pop(pid, None)
        freed = tree_size(folder) if folder.exists() else 0
        remove_tree(folder)
        return freed

    def purge(self) -> None:
        self._folders.clear()
        remove_tree(self.root / "projects")
        (self.root / "projects").mkdir()

    def disk_usage(self) -> dict[str, int]:
        usage = shutil.disk_usage(self.root)
        return {"total": usage.total, "used": usage.used, "free": usage.free}

    def require_free(self, incoming: int, reserve: int) -> None:
        """Refuse work that would leave less than `reserve` bytes free on the data disk."""
        free = shutil.disk_usage(self.root).free
        if free - incoming < reserve:
            raise InsufficientStorage(
                f"not enough disk space on the server: {free // 2**20} MiB free, "
                f"{incoming // 2**20} MiB incoming, {reserve // 2**20} MiB must stay free"
            )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()
