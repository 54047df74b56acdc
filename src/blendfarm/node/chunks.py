"""Finishing a chunk on the node: check what Blender wrote, cut the overscan off."""

from __future__ import annotations

from pathlib import Path

from ..errors import BlendfarmError
from ..exr import read_exr, write_exr
from ..formats import ChunkKind
from ..frame_files import read_tiff
from ..pngio import NotAPng, read_png, write_png
from ..tiles import Rect, crop_box


def finish_chunk(path: Path, rendered: Rect, wanted: Rect, kind: ChunkKind = "png") -> None:
    """Check what Blender wrote (whole, the expected size) and cut the overscan off, in place:
    a PNG, or every channel of every part of an EXR (kinds exr and raw)."""
    if kind != "png":
        _finish_exr(path, rendered, wanted)
        return
    try:
        img = read_png(path)
    except NotAPng as exc:
        raise BlendfarmError(f"Blender wrote a damaged image ({exc}); is the disk full?") from None
    _check_size(img.shape[1], img.shape[0], rendered)
    if rendered != wanted:
        box = crop_box(rendered, wanted)
        # A scratch file, sent and deleted at once: no fsync on the node's chunk loop.
        write_png(path, img[box.y0 : box.y1, box.x0 : box.x1], durable=False)


def _finish_exr(path: Path, rendered: Rect, wanted: Rect) -> None:
    try:
        img = read_exr(path)
    except ValueError as exc:
        raise BlendfarmError(f"Blender wrote a damaged image ({exc}); is the disk full?") from None
    _check_size(img.width, img.height, rendered)
    if rendered == wanted:
        return
    box = crop_box(rendered, wanted)
    parts = [
        (part.name, {n: a[box.y0 : box.y1, box.x0 : box.x1] for n, a in chans.items()}, head)
        for part, chans, head in zip(img.parts, img.pixels, img.headers, strict=True)
    ]
    write_exr(path, parts, durable=False)


def tiff_as_png(path: Path, png: Path) -> None:
    """A chunk Blender wrote as TIFF (for a TIFF scene: Blender's own conversion to 8 or
    16 bits) as the PNG it is sent as, every value kept."""
    try:
        image = read_tiff(path)
    except Exception as exc:  # tifffile raises many kinds on a damaged file
        raise BlendfarmError(f"Blender wrote a damaged image ({exc}); is the disk full?") from None
    write_png(png, image, durable=False)
    path.unlink(missing_ok=True)


def _check_size(width: int, height: int, rendered: Rect) -> None:
    if (width, height) != (rendered.width, rendered.height):
        raise BlendfarmError(
            f"Blender rendered {width}x{height}, expected {rendered.width}x{rendered.height}"
        )
