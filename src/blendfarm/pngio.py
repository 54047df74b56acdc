"""PNG files as numpy arrays, keeping 16-bit depth and alpha (Pillow drops 16-bit RGBA)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import png

from .atomic import replacing

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotAPng(ValueError):
    pass


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR, without decoding it."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise NotAPng(f"{path.name} is not a PNG image")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, colour


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # per colour type
DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
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
    name = path.name
    with open(path, "rb") as fh:
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
                header, interlaced = _header(data, name)
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


def _header(data: bytes, name: str) -> tuple[tuple[int, int, int, int], bool]:
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
    """The image as an array of shape (height, width, channels), uint8 or uint16."""
    png_header(path)
    try:
        reader = png.Reader(filename=str(path))
        width, height, rows, info = reader.asDirect()
        planes = info["planes"]
        dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
        data = np.vstack([np.asarray(row, dtype=dtype) for row in rows])
        return data.reshape(height, width, planes)  # ValueError when rows are missing
    except (png.FormatError, png.ChunkError, ValueError) as exc:
        raise NotAPng(f"{path.name} is not a valid PNG image: {exc}") from None


def write_png(path: Path, image: np.ndarray, durable: bool = True) -> None:
    """Write `image` (H×W×C, C in 1..4, uint8 or uint16) as a PNG, atomically (and on the
    disk before returning unless `durable` is False: see `atomic.replacing`)."""
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, planes = image.shape
    depth = 16 if image.dtype == np.uint16 else 8
    writer = png.Writer(
        width, height, greyscale=planes <= 2, alpha=planes in (2, 4), bitdepth=depth, compression=6
    )
    with replacing(path, durable=durable) as tmp, open(tmp, "wb") as fh:
        writer.write(fh, image.reshape(height, width * planes))


def write_png_rows(
    path: Path,
    width: int,
    height: int,
    planes: int,
    dtype: np.dtype,
    rows: Iterable[np.ndarray],
) -> None:
    """Write a PNG from its rows as they come (each width*planes values), atomically."""
    depth = 16 if dtype == np.uint16 else 8
    writer = png.Writer(
        width, height, greyscale=planes <= 2, alpha=planes in (2, 4), bitdepth=depth, compression=6
    )
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        writer.write(fh, rows)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An 8-bit copy of `image` (16-bit scaled with rounding)."""
    if image.dtype == np.uint8:
        return image
    return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
