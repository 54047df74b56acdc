"""Writing files so that readers (and a restarted server) never see half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` when the block ends.

    The name is unique, so a writer left over from a crashed process never shares it with the
    one that redoes the work. On error the temporary file is removed and `path` is untouched.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
