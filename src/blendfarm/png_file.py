"""A PNG file's chunks: its signature, its header's values, every chunk's CRC (pngio reads
and writes the image in them)."""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotAPng(ValueError):
    pass


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # per colour type
DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def parse_header(data: bytes, name: str) -> tuple[tuple[int, int, int, int], bool]:
    if len(data) != 13:
        raise NotAPng(f"{name} has a damaged header")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", data
    )
    if (
        not (0 < width < 2**31 and 0 < height < 2**31)
        or depth not in DEPTHS.get(colour, ())
        or (compression, filtering) != (0, 0)
        or interlace not in (0, 1)
    ):
        raise NotAPng(f"{name} has a header no decoder accepts")
    return (width, height, depth, colour), bool(interlace)


class Chunks(NamedTuple):
    header: tuple[int, int, int, int]
    interlaced: bool
    idat: bytes  # every IDAT chunk's data, joined
    kinds: set[bytes]  # the kinds of chunk the file has


def read_chunks(data: bytes, name: str) -> Chunks:
    """The header and image data of a whole PNG in memory, every chunk's CRC checked."""
    if data[:8] != PNG_SIGNATURE:
        raise NotAPng(f"{name} is not a PNG image")
    view = memoryview(data)
    pos, end = 8, len(data)
    header: tuple[int, int, int, int] | None = None
    interlaced = False
    idat: list[memoryview] = []
    kinds: set[bytes] = set()
    while True:
        if pos + 12 > end:
            raise NotAPng(f"{name} is cut off (no end chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8 + length
        if body + 4 > end:
            raise NotAPng(f"{name} is cut off")
        if zlib.crc32(view[pos + 4 : body]) != struct.unpack_from(">I", data, body)[0]:
            raise NotAPng(f"{name} is damaged: the {kind.decode('latin-1')} chunk's CRC fails")
        if header is None and kind != b"IHDR":
            raise NotAPng(f"{name} does not begin with its header")
        kinds.add(kind)
        if kind == b"IHDR":
            header, interlaced = parse_header(data[pos + 8 : body], name)
        elif kind == b"IDAT":
            idat.append(view[pos + 8 : body])
        elif kind == b"IEND":
            break
        pos = body + 4
    if not idat:
        raise NotAPng(f"{name} has no image data")
    assert header is not None
    return Chunks(header, interlaced, b"".join(idat), kinds)


def make_chunk(kind: bytes, data: bytes | bytearray) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + bytes(data)
        + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
    )
