"""The Blender the server hands out: one official `blender-*-linux-*.tar.xz`, with its sha256.

Every node without `--blender` renders with it, so a farm renders with one Blender (same
version, same colour management) without anyone installing it by hand.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Any

from ..errors import BadInput, NotFound
from .files import DataDir, sha256_file
from .store import Store

NAME = re.compile(r"blender-\d[\w.+-]*-linux-[\w-]+\.tar\.(xz|gz|bz2)")
META_KEY = "blender"


def find_executable(names: list[tuple[str, bool]]) -> str | None:
    """The `blender` executable among tar members (name, is executable), shallowest first."""
    found = [
        name
        for name, executable in names
        if executable and name.rsplit("/", 1)[-1] == "blender" and name.count("/") <= 2
    ]
    return min(found, key=lambda n: (n.count("/"), n)) if found else None


def check_tarball(path: Path) -> str:
    """The executable's path inside a Blender tarball; BadInput when it is not one."""
    try:
        with tarfile.open(path) as tar:
            members = [(m.name.lstrip("./"), m.isfile() and bool(m.mode & 0o111)) for m in tar]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadInput(f"not a readable tar archive: {exc}") from None
    executable = find_executable(members)
    if executable is None:
        raise BadInput("the archive holds no 'blender' executable (an official Linux build?)")
    return executable


class BlenderShelf:
    """Where the server keeps its Blender tarball and what it knows about it."""

    def __init__(self, data: DataDir, store: Store):
        self.folder = data.root / "blender"
        self.folder.mkdir(exist_ok=True)
        self.store = store

    def info(self) -> dict[str, Any] | None:
        raw = self.store.db.get_meta(META_KEY)
        if not raw:
            return None
        info: dict[str, Any] = json.loads(raw)
        if not (self.folder / info["filename"]).exists():
            return None
        return info

    def path(self) -> Path:
        info = self.info()
        if info is None:
            raise NotFound("the server has no Blender (blendfarm blender upload FILE)")
        return self.folder / str(info["filename"])

    def accept(self, upload: Path, filename: str) -> dict[str, Any]:
        """Check an uploaded tarball and make it the farm's Blender (the old one is dropped)."""
        try:
            name = Path(filename).name
            if not NAME.fullmatch(name):
                raise BadInput(
                    f"{filename!r} is not an official Blender build name "
                    "(blender-VERSION-linux-ARCH.tar.xz)"
                )
            executable = check_tarball(upload)
            info = {
                "filename": name,
                "sha256": sha256_file(upload),
                "size": upload.stat().st_size,
                "executable": executable,
                "uploaded": time.time(),
            }
            os.replace(upload, self.folder / name)
            for old in self.folder.iterdir():
                if old.name != name:
                    old.unlink(missing_ok=True)
            self.store.db.set_meta(META_KEY, json.dumps(info))
            return info
        finally:
            upload.unlink(missing_ok=True)
