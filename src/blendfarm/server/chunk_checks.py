"""What a chunk result must be before the server keeps it: an image of the chunk's kind and
size, whole (a cut-off file is refused at once, not found damaged when its frame is
stitched). Checked without decoding the pixels where the format allows."""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from ..exr import exr_layout, is_exr, read_exr
from ..formats import ChunkKind
from ..pngio import NotAPng, check_png, check_png_data, png_header_of


def check_chunk_file(path: Path, kind: ChunkKind, width: int, height: int) -> None:
    """BadInput unless `path` is an image of `kind` (PNG; OpenEXR for exr and raw) of
    `width`x`height`, whole: a cut-off file is refused, not stitched later."""
    if kind == "png":
        with open(path, "rb") as fh:
            check_png_size(fh.read(33), width, height)  # its size first
        try:  # every CRC and the image data, not decoded: a cut-off file is refused here
            check_png(path)
        except NotAPng as exc:
            raise BadInput(f"the chunk image is damaged: {exc}") from None
        return
    if not is_exr(path):
        raise BadInput(f"the {kind} chunk result is not an OpenEXR image")
    try:
        got_w, got_h, _parts = exr_layout(path)  # its size first: never decode a huge one
        if (got_w, got_h) != (width, height):
            raise BadInput(f"the chunk image is {got_w}x{got_h}, expected {width}x{height}")
        read_exr(path)
    except ValueError as exc:
        raise BadInput(f"the chunk image is damaged: {exc}") from None


def check_png_size(head: bytes, width: int, height: int) -> None:
    """BadInput unless `head` (a PNG's first 33 bytes) begins a PNG of `width`x`height`."""
    try:
        got_w, got_h, _depth, _colour = png_header_of(head[:33], "the chunk")
    except NotAPng:
        raise BadInput("the chunk result is not a PNG image") from None
    if (got_w, got_h) != (width, height):
        raise BadInput(f"the chunk image is {got_w}x{got_h}, expected {width}x{height}")


def check_png_chunk(data: bytes, width: int, height: int) -> None:
    """BadInput unless `data` is a whole PNG of `width`x`height` (see `check_chunk_file`)."""
    check_png_size(data, width, height)
    try:
        check_png_data(data, "the chunk")
    except NotAPng as exc:
        raise BadInput(f"the chunk image is damaged: {exc}") from None
