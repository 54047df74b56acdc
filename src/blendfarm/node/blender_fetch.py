"""Getting the server's Blender onto a node: download once, verify, unpack safely."""

from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from ..archive import remove_tree
from ..client import ApiClient
from ..errors import BlendfarmError
from ..protocol import BlenderStatus

# What unpacking a damaged or hostile tarball can raise (FilterError is a TarError).
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error)


def unpack_blender(tarball: Path, dest: Path) -> Path:
    """Unpack a Blender tarball with the 'data' filter (no absolute paths, no links out).

    Whatever goes wrong is a BlendfarmError with one sentence; nothing is left behind.
    """
    staging = dest.with_name(f".{dest.name}.tmp")
    remove_tree(staging)
    staging.mkdir(parents=True)
    try:
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(staging, filter="data")
        except TAR_ERRORS as exc:
            why = str(exc).rstrip(".") or type(exc).__name__
            raise BlendfarmError(f"the server's Blender cannot be unpacked: {why}") from None
        executable = find_blender_in(staging)
        remove_tree(dest)
        staging.rename(dest)
    finally:
        remove_tree(staging)
    return dest / executable.relative_to(staging)


def find_blender_in(folder: Path) -> Path:
    """The shallowest executable file called `blender` below `folder`."""
    found = sorted(
        (p for p in folder.rglob("blender") if p.is_file() and os.access(p, os.X_OK)),
        key=lambda p: (len(p.relative_to(folder).parts), str(p)),
    )
    if not found:
        raise BlendfarmError("the server's Blender archive holds no 'blender' executable")
    return found[0]


def fetch_blender(
    client: ApiClient, work_dir: Path, info: BlenderStatus, say: Callable[[str], None]
) -> Path:
    """The executable of the server's Blender described by `info`, downloaded when missing.

    Older Blenders in the work dir are removed once the new one is in place.
    """
    sha = info.sha256 or ""
    if not sha.isalnum():
        raise BlendfarmError("the server sent a bad Blender hash")
    root = work_dir / "blender"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / sha[:16]
    if (dest / ".complete").exists():
        executable = find_blender_in(dest)
    else:
        part = root / f"{sha[:16]}.tar.part"
        size = info.size or 0
        say(f"downloading the server's Blender {info.filename} ({size // 2**20} MiB)")
        shown = [0]

        def progress(done: int) -> None:
            if size and done * 10 // size > shown[0]:
                shown[0] = done * 10 // size
                say(f"  {shown[0] * 10}% of Blender downloaded")

        try:
            client.fetch_verified(
                "/api/blender/download", part, sha, "the server's Blender", progress
            )
            executable = unpack_blender(part, dest)
            (dest / ".complete").touch()
        finally:
            part.unlink(missing_ok=True)
    for old in root.iterdir():
        if old != dest and not old.name.startswith("."):
            remove_tree(old) if old.is_dir() else old.unlink(missing_ok=True)
    return executable
