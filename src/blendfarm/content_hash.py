"""A project's content hash: what its files hold and which .blend renders, not how it was zipped.

Two submissions of the same folder make two different zips (timestamps, order, compression)
but the same content hash, so a node that has one unpacked and loaded in Blender renders the
other without downloading it or starting Blender again.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from .errors import BadInput

BLOCK = 1024 * 1024
# What reading a damaged or unreadable member raises (bad CRC, broken deflate stream, cut-off
# member, encrypted member, unknown compression method).
UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError)


def content_sha(archive: Path, blend: str) -> str:
    """sha256 over the archive's files, sorted by name (each name with the sha256 of its
    bytes), and the name of the .blend to render. Folders are left out: they hold nothing.
    BadInput when a member cannot be read."""
    digests: list[tuple[str, str]] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                inner = hashlib.sha256()
                with zf.open(info) as member:
                    while block := member.read(BLOCK):
                        inner.update(block)
                digests.append((info.filename, inner.hexdigest()))
    except (*UNREADABLE, struct.error) as exc:
        raise BadInput(f"the zip archive is damaged: {exc}") from None
    return content_sha_of(digests, blend)


def content_sha_of(digests: Iterable[tuple[str, str]], blend: str) -> str:
    """`content_sha` from the members' (name in the zip, sha256), read already (an upload's
    are, by `archive.inspect_zip`)."""
    outer = hashlib.sha256()
    for name, digest in sorted(digests, key=lambda d: d[0]):
        outer.update(f"file\0{name}\0{digest}\n".encode())
    outer.update(f"blend\0{blend}\n".encode())
    return outer.hexdigest()
