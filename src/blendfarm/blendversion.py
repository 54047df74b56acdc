"""Which Blender saved a .blend, read from its header (plain, gzip or zstd compressed)."""

from __future__ import annotations

import functools
import gzip
import io
import re
from typing import IO

# Blender ≤ 4.x: "BLENDER" + pointer size ('_' / '-') + endianness ('v' / 'V') + "304".
# Blender ≥ 5.0: "BLENDER" + header size + '-' + format + 'v' + "0500".
_OLD = re.compile(rb"BLENDER[_-][vV](\d)(\d\d)")
_NEW = re.compile(rb"BLENDER\d\d-\d\d[vV](\d\d)(\d\d)")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def parse_header(head: bytes) -> tuple[int, int] | None:
    """(major, minor) from the first bytes of an uncompressed .blend, or None."""
    m = _NEW.match(head) or _OLD.match(head)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def read_version(stream: IO[bytes]) -> tuple[int, int] | None:
    """The version that saved the .blend in `stream`, or None when it is not a .blend."""
    head = stream.read(32)
    if head[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(head + stream.read(64 * 1024))) as gz:
            try:
                return parse_header(gz.read(32))
            except (OSError, EOFError):
                return None
    if head[:4] == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            return None
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(head + stream.read(64 * 1024))
        )
        try:
            return parse_header(reader.read(32))
        except zstandard.ZstdError:
            return None
    return parse_header(head)


@functools.lru_cache(maxsize=256)
def version_tuple(text: str | None) -> tuple[int, ...]:
    """'3.4.1' → (3, 4, 1); anything unreadable → ()."""
    parts = re.findall(r"\d+", text or "")
    return tuple(int(p) for p in parts[:3])


def can_open(blender_version: str | None, file_version: str | None) -> bool:
    """Whether a Blender of `blender_version` may render a file saved by `file_version`.

    An unknown version on either side does not hold a project back.
    """
    have = version_tuple(blender_version)
    if not file_version or not have:
        return True
    return have[:2] >= version_tuple(file_version)[:2]
