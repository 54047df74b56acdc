"""The Blender the server hands out: one official `blender-*-linux-*.tar.xz`, with its sha256.

Every node without `--blender` renders with it, so a farm renders with one Blender (same
version, same colour management) without anyone installing it by hand.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import tarfile
import time
import zlib
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


class _Outside(Exception):
    """A path leaves the archive."""


def _walk(parts: list[str], links: set[str]) -> tuple[str, str | None]:
    """Follow path `parts` from the archive's root without touching a disk: the path reached
    and the first known link on the way (None when there is none); _Outside when it leaves."""
    stack: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise _Outside()
            stack.pop()
            continue
        stack.append(part)
        if "/".join(stack) in links:
            return "/".join(stack), "/".join(stack)
    return "/".join(stack), None


def _member_problem(member: tarfile.TarInfo, links: set[str]) -> str | None:
    """Why a node could not unpack `member` safely (one sentence), or None.

    `links` holds the symbolic links seen so far. A name, or a link's target, that goes
    through one is refused: where it lands depends on the link, not on the text.
    """
    raw = member.name
    if raw.startswith("/"):
        return f"the archive member {raw!r} has an absolute path"
    parts = raw.split("/")
    if ".." in parts:
        return f"the archive member {raw!r} points outside the archive ('..')"
    name, through = _walk(parts, links)
    if through is not None:
        return f"the archive member {raw!r} goes through the link {through!r}"
    if member.ischr() or member.isblk() or member.isfifo():
        return f"the archive member {raw!r} is a device file or pipe"
    if member.issym() or member.islnk():
        kind = "link" if member.issym() else "hard link"
        target = member.linkname
        if target.startswith("/"):
            return f"the archive's {kind} {raw!r} points to the absolute path {target!r}"
        base = name.split("/")[:-1] if member.issym() else []
        try:
            _, through = _walk(base + target.split("/"), links)
        except _Outside:
            return f"the archive's {kind} {raw!r} points outside the archive ({target!r})"
        if through is not None:
            return f"the archive's {kind} {raw!r} points through the link {through!r}"
        if member.issym():
            links.add(name)
    return None


def check_tarball(path: Path) -> str:
    """The executable's path inside a Blender tarball; BadInput when it is not one, or when a
    node could not unpack it safely (absolute or '..' names, links out of it, device files)."""
    links: set[str] = set()
    members: list[tuple[str, bool]] = []
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                problem = _member_problem(m, links)
                if problem:
                    raise BadInput(problem)
                members.append((m.name.lstrip("./"), m.isfile() and bool(m.mode & 0o111)))
    except (tarfile.TarError, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
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
        raw = self.store.get_meta(META_KEY)
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
            self.store.set_meta(META_KEY, json.dumps(info))
            return info
        finally:
            upload.unlink(missing_ok=True)
