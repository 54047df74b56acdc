"""Writing files so that readers (and a restarted server) never see half of one."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = "", durable: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` when the block ends.

    The name is unique, so a writer left over from a crashed process never shares it with the
    one that redoes the work. On error the temporary file is removed and `path` is untouched.
    `durable`: the file and its folder entry are on the disk before this returns (files the
    farm keeps); a scratch file that is read back at once and deleted can skip that.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        if durable and tmp.exists():
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_private_json(path: Path, data: object) -> None:
    """Write JSON only its owner may read (mode 0600), atomically and durably (secrets, keys)."""
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)


def fsync_file(path: Path) -> None:
    """Flush a written file and the directory entry naming it to the disk.

    Called before the database records the file, so that after a power cut a record never
    points at an empty or missing file.
    """
    _fsync(path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
