"""PNG files as numpy arrays, keeping 16-bit depth and alpha (Pillow drops 16-bit RGBA)."""

from __future__ import annotations

import struct
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


def read_png(path: Path) -> np.ndarray:
    """The image as an array of shape (height, width, channels), uint8 or uint16."""
    png_header(path)
    try:
        reader = png.Reader(filename=str(path))
        width, height, rows, info = reader.asDirect()
        planes = info["planes"]
        dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
        data = np.vstack([np.asarray(row, dtype=dtype) for row in rows])
    except (png.FormatError, png.ChunkError, ValueError) as exc:
        raise NotAPng(f"{path.name} is not a valid PNG image: {exc}") from None
    return data.reshape(height, width, planes)


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
