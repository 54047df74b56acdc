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
    outer = hashlib.sha256()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = (i for i in zf.infolist() if not i.is_dir())
            for info in sorted(infos, key=lambda i: i.filename):
                inner = hashlib.sha256()
                with zf.open(info) as member:
                    while block := member.read(BLOCK):
                        inner.update(block)
                outer.update(f"file\0{info.filename}\0{inner.hexdigest()}\n".encode())
    except (*UNREADABLE, struct.error) as exc:
        raise BadInput(f"the zip archive is damaged: {exc}") from None
    outer.update(f"blend\0{blend}\n".encode())
    return outer.hexdigest()
