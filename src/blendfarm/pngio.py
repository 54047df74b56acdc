"""PNG files as numpy arrays, keeping 16-bit depth and alpha (Pillow alone drops 16-bit RGBA).

Reading and writing cost no Python loop per pixel: the chunks are parsed here (png_file), the
rows unfiltered and filtered by numpy (png_rows), zlib and Pillow's decoder do the rest in C;
pypng only decodes the kinds of PNG neither does exactly (low bit depths, palettes, ...).
`check_png` checks a file whole without building its image."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
from PIL import Image

from .atomic import replacing
from .png_file import (
    CHANNELS,
    PNG_SIGNATURE,
    NotAPng,
    make_chunk,
    parse_header,
    read_chunks,
)
from .png_rows import BadFilter, filter_up, unfilter


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR, without decoding it."""
    with open(path, "rb") as fh:
        return png_header_of(fh.read(33), path.name)


def png_header_of(head: bytes, name: str) -> tuple[int, int, int, int]:
    """`png_header` of a PNG's bytes (its first 33 are enough), named `name` in errors."""
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise NotAPng(f"{name} is not a PNG image")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, colour


ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
CHECK_BLOCK = 1024**2  # bytes read, and inflated, at a time


def check_png(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) of a whole, undamaged PNG; NotAPng otherwise.

    Checks what a decoder would trip on without building the image: every chunk's length
    and CRC, the header's values, the image data inflating (zlib's own checksum included) to
    exactly the bytes its size needs, a valid filter at the start of every row, and the end
    chunk. Memory stays at a few MiB whatever the image's size."""
    with open(path, "rb") as fh:
        return _check_stream(fh, path.name)


def check_png_data(data: bytes, name: str) -> tuple[int, int, int, int]:
    """`check_png` of a PNG's bytes (a small upload held in memory), named `name` in errors."""
    return _check_stream(io.BytesIO(data), name)


def _check_stream(fh: BinaryIO, name: str) -> tuple[int, int, int, int]:
    if fh.read(8) != PNG_SIGNATURE:
        raise NotAPng(f"{name} is not a PNG image")
    header: tuple[int, int, int, int] | None = None
    rows: _Rows | None = None
    inflate = zlib.decompressobj()
    palette = interlaced = False
    while True:
        head = fh.read(8)
        if len(head) < 8:
            raise NotAPng(f"{name} is cut off (no end chunk)")
        length, kind = struct.unpack(">I4s", head)
        if length > 2**31 - 1:
            raise NotAPng(f"{name} has a chunk of impossible length")
        crc = zlib.crc32(kind)
        if header is None and kind != b"IHDR":
            raise NotAPng(f"{name} does not begin with its header")
        if kind == b"IDAT":
            if rows is None:
                if header is None or (header[3] == 3 and not palette):
                    raise NotAPng(f"{name} has image data before its header or palette")
                rows = _Rows(*header, interlaced=interlaced, name=name)
            left = length
            while left:
                block = fh.read(min(left, CHECK_BLOCK))
                if not block:
                    raise NotAPng(f"{name} is cut off")
                left -= len(block)
                crc = zlib.crc32(block, crc)
                _inflate(inflate, block, rows, name)
            data = b""
        else:
            data = fh.read(length)
            if len(data) < length:
                raise NotAPng(f"{name} is cut off")
            crc = zlib.crc32(data, crc)
        stored = fh.read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc:
            raise NotAPng(f"{name} is damaged: the {kind.decode('latin-1')} chunk's CRC fails")
        if kind == b"IHDR":
            header, interlaced = parse_header(data, name)
        elif kind == b"PLTE":
            palette = True
        elif kind == b"IEND":
            break
    if rows is None:
        raise NotAPng(f"{name} has no image data")
    try:
        rows.take(inflate.flush())
    except zlib.error as exc:
        raise NotAPng(f"{name} is damaged: {exc}") from None
    if not inflate.eof or not rows.complete:
        raise NotAPng(f"{name} is damaged: its image data is cut off")
    assert header is not None
    return header


def _inflate(inflate: zlib._Decompress, block: bytes, rows: _Rows, name: str) -> None:
    """Inflate `block` a bounded piece at a time, checking each piece's rows."""
    try:
        while block:
            rows.take(inflate.decompress(block, CHECK_BLOCK))
            block = inflate.unconsumed_tail
    except zlib.error as exc:
        raise NotAPng(f"{name} is damaged: {exc}") from None
    if inflate.unused_data:
        raise NotAPng(f"{name} is damaged: data after the end of its image")


class _Rows:
    """Walks the inflated image data: each row's filter byte (0-4), then its bytes."""

    def __init__(
        self, width: int, height: int, depth: int, colour: int, interlaced: bool, name: str
    ):
        self.name = name
        bits = CHANNELS[colour] * depth
        passes = (
            [
                ((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
                for x0, y0, dx, dy in ADAM7
            ]
            if interlaced
            else [(width, height)]
        )
        self._sizes = iter([(1 + (w * bits + 7) // 8, h) for w, h in passes if w and h])
        self._row = 0  # bytes of each row of the current pass, its filter byte included
        self._left = 0  # rows left in the current pass
        self._at = 0  # bytes to skip before the next filter byte
        self.complete = False
        self._next_pass()

    def _next_pass(self) -> None:
        size = next(self._sizes, None)
        if size is None:
            self.complete = True
        else:
            self._row, self._left = size

    def take(self, data: bytes) -> None:
        pos = self._at
        end = len(data)
        while pos < end:
            if self.complete:
                raise NotAPng(f"{self.name} is damaged: more image data than its size needs")
            if data[pos] > 4:
                raise NotAPng(f"{self.name} is damaged: a row has no valid filter type")
            pos += self._row
            self._left -= 1
            if not self._left:
                self._next_pass()
        self._at = pos - end


def read_png(path: Path) -> np.ndarray:
    """The image as an array of shape (height, width, channels), uint8 or uint16: palettes
    expanded to RGB, a tRNS chunk made an alpha channel, samples scaled down to an sBIT
    chunk's depth (pypng's `asDirect`, every value the same whichever way below decodes it).

    Non-interlaced 8 and 16-bit grey, grey+alpha, RGB and RGBA without tRNS or sBIT (every
    file the farm writes, and Blender's) decode without a loop per pixel: through numpy when
    every row's filter is none, sub or up (png_rows.unfilter), else through Pillow where it is
    exact. The rest (low bit depths, palettes, ...) through pypng."""
    return decode_png(path.read_bytes(), path.name)


def decode_png(data: bytes, name: str) -> np.ndarray:
    """`read_png` of a PNG's bytes, named `name` in errors."""
    found = read_chunks(data, name)
    width, height, depth, colour = found.header
    planes = CHANNELS[colour]
    plain = depth in (8, 16) and colour != 3 and not found.kinds & {b"tRNS", b"sBIT"}
    if plain and not found.interlaced:
        row_bytes = width * planes * depth // 8
        raw = _inflate_all(found.idat, height * (1 + row_bytes), name)
        try:
            rows = unfilter(raw, height, row_bytes, planes * depth // 8)
        except BadFilter as exc:
            raise NotAPng(f"{name} is not a valid PNG image: {exc}") from None
        if rows is not None:
            return _pixels(rows, width, height, planes, depth)
    if plain:
        image = _read_pillow(data, depth, colour)
        if image is not None and image.shape == (height, width, planes):
            return image
    return _read_pypng(data, name)


def _inflate_all(idat: bytes, size: int, name: str) -> np.ndarray:
    """The image data inflated: exactly `size` bytes, or NotAPng (never more in memory)."""
    inflate = zlib.decompressobj()
    try:
        data = inflate.decompress(idat, size)
        more = inflate.decompress(inflate.unconsumed_tail, 1) if not inflate.eof else b""
    except zlib.error as exc:
        raise NotAPng(f"{name} is damaged: {exc}") from None
    if len(data) < size or not inflate.eof:
        raise NotAPng(f"{name} is damaged: its image data is cut off")
    if more or inflate.unused_data:
        raise NotAPng(f"{name} is damaged: more image data than its size needs")
    return np.frombuffer(data, np.uint8)


def _pixels(rows: np.ndarray, width: int, height: int, planes: int, depth: int) -> np.ndarray:
    if depth == 16:
        return rows.view(">u2").astype(np.uint16).reshape(height, width, planes)
    return rows.reshape(height, width, planes)


PILLOW_MODES = {(8, 0): "L", (8, 4): "LA", (8, 2): "RGB", (8, 6): "RGBA", (16, 0): "I;16"}
PILLOW_DEEP = {2: "RGB;16B", 6: "RGBA;16B"}  # the raw modes Pillow reads 16-bit colour with


def _read_pillow(data: bytes, depth: int, colour: int) -> np.ndarray | None:
    """The image through Pillow where it is exact (its C decoder undoes every filter), else
    None. Pillow keeps each 16-bit colour sample's high byte only; read once more with the
    little-endian raw mode, it keeps the low byte instead, and the two make the sample."""
    try:
        mode = PILLOW_MODES.get((depth, colour))
        if mode is not None:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                if im.mode != mode:
                    return None
                im.load()
                image = np.asarray(im)
            image = image.astype(np.uint16 if depth == 16 else np.uint8, copy=False)
            return image[:, :, None] if image.ndim == 2 else image
        rawmode = PILLOW_DEEP.get(colour) if depth == 16 else None
        if rawmode is None:
            return None
        high = _pillow_bytes(data, rawmode, rawmode)
        low = _pillow_bytes(data, rawmode, rawmode.replace(";16B", ";16L"))
        if high is None or low is None:
            return None
        return (high.astype(np.uint16) << 8) | low
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # pypng decodes it, or says what is wrong with it


def _pillow_bytes(data: bytes, rawmode: str, wanted: str) -> np.ndarray | None:
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        tiles = im.tile
        if len(tiles) != 1 or tiles[0].args != rawmode:
            return None  # not the decoding this relies on
        im.tile = [tiles[0]._replace(args=wanted)]
        im.load()
        return np.asarray(im)


def _read_pypng(data: bytes, name: str) -> np.ndarray:
    try:
        reader = png.Reader(bytes=data)
        width, height, rows, info = reader.asDirect()
        planes = info["planes"]
        dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
        image = np.vstack([np.asarray(row, dtype=dtype) for row in rows])
        return image.reshape(height, width, planes)  # ValueError when rows are missing
    except (png.FormatError, png.ChunkError, ValueError, zlib.error) as exc:
        raise NotAPng(f"{name} is not a valid PNG image: {exc}") from None


COMPRESSION = 3  # zlib's level: 6 costs about 3 times the CPU for 3-5 % smaller frames
IDAT_SIZE = 1024**2  # bytes of compressed image data per IDAT chunk, at most
FILTER_BLOCK = 4 * 1024**2  # bytes of rows filtered and deflated at a time


def write_png(path: Path, image: np.ndarray, durable: bool = True) -> None:
    """Write `image` (H×W×C, C in 1..4, uint8 or uint16) as a PNG, atomically (and on the
    disk before returning unless `durable` is False: see `atomic.replacing`)."""
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, planes = image.shape
    with replacing(path, durable=durable) as tmp, open(tmp, "wb") as fh:
        _write(fh, width, height, planes, image.dtype, [image.reshape(height, width * planes)])


def write_png_rows(
    path: Path,
    width: int,
    height: int,
    planes: int,
    dtype: np.dtype,
    rows: Iterable[np.ndarray],
) -> None:
    """Write a PNG from its rows as they come, atomically: each item one row (width*planes
    values) or a block of rows (n × width*planes), 16-bit when `dtype` is uint16. Only a few
    MiB beyond the caller's rows are in memory at a time."""
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        _write(fh, width, height, planes, dtype, rows)


def _write(
    fh: BinaryIO,
    width: int,
    height: int,
    planes: int,
    dtype: np.dtype,
    blocks: Iterable[np.ndarray],
) -> None:
    """A PNG's bytes: filter type up on every row, IDAT chunks of at most IDAT_SIZE."""
    deep = np.dtype(dtype) == np.uint16
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[planes]
    header = struct.pack(">IIBBBBB", width, height, 16 if deep else 8, colour, 0, 0, 0)
    fh.write(PNG_SIGNATURE + make_chunk(b"IHDR", header))
    values = width * planes
    row_bytes = values * (2 if deep else 1)
    step = max(1, FILTER_BLOCK // row_bytes)
    deflate = zlib.compressobj(COMPRESSION)
    pending = bytearray()
    above = np.zeros(row_bytes, np.uint8)
    done = 0
    for block in blocks:
        block = np.asarray(block).reshape(-1, values)
        for at in range(0, block.shape[0], step):
            part = _as_bytes(block[at : at + step], deep)
            done += part.shape[0]
            if done > height:
                raise ValueError(f"more than the {height} rows of the image")
            pending += deflate.compress(filter_up(part, above).data)
            above = part[-1].copy()  # the caller may reuse its rows' memory
            while len(pending) >= IDAT_SIZE:
                fh.write(make_chunk(b"IDAT", pending[:IDAT_SIZE]))
                del pending[:IDAT_SIZE]
    if done != height:
        raise ValueError(f"{done} rows for an image of {height}")
    pending += deflate.flush()
    for at in range(0, len(pending), IDAT_SIZE):
        fh.write(make_chunk(b"IDAT", pending[at : at + IDAT_SIZE]))
    fh.write(make_chunk(b"IEND", b""))


def _as_bytes(rows: np.ndarray, deep: bool) -> np.ndarray:
    """Rows of samples as the file's bytes (16-bit big-endian), each row contiguous."""
    top = 65535 if deep else 255
    if rows.size and rows.dtype != (np.uint16 if deep else np.uint8):
        if rows.min() < 0 or rows.max() > top:
            raise ValueError(f"a value outside 0..{top} in a {16 if deep else 8}-bit image")
    if deep:
        return np.ascontiguousarray(rows, dtype=">u2").view(np.uint8)
    return np.ascontiguousarray(rows, dtype=np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An 8-bit copy of `image` (16-bit scaled with rounding)."""
    if image.dtype == np.uint8:
        return image
    return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
