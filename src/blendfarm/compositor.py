"""Stitching chunks into frames, frames into an mp4, chunks into the raw zip.

Chunks are pasted at their exact rectangles, never blended: overlapping alpha would add up.
Work is on numpy arrays so 16-bit depth and alpha survive.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import replacing
from .errors import BadChunks
from .pngio import NotAPng, png_header, read_png, to_uint8, write_png_rows
from .tiles import Rect

THUMBNAIL_WIDTH = 320


def chunk_name(project_id: str, frame: int, row: int, col: int, ext: str = "png") -> str:
    """The seed's name of a raw chunk: `<project id>-<frame number>-<row>-<column>.<ext>`."""
    return f"{project_id}-{frame}-{row}-{col}.{ext}"


def stitch(chunks: Sequence[tuple[Rect, np.ndarray]], width: int, height: int) -> np.ndarray:
    """One frame from its chunks, each pasted at its rectangle."""
    if not chunks:
        raise ValueError("no chunks to stitch")
    first = chunks[0][1]
    planes = max(img.shape[2] for _, img in chunks)
    dtype = np.dtype(np.uint16) if any(img.dtype == np.uint16 for _, img in chunks) else first.dtype
    frame = np.zeros((height, width, planes), dtype=dtype)
    for rect, img in chunks:
        if img.shape[0] != rect.height or img.shape[1] != rect.width:
            raise ValueError(
                f"chunk at {rect} is {img.shape[1]}x{img.shape[0]}, expected "
                f"{rect.width}x{rect.height}"
            )
        frame[rect.y0 : rect.y1, rect.x0 : rect.x1] = _match(img, planes, dtype)
    return frame


def _match(img: np.ndarray, planes: int, dtype: np.dtype) -> np.ndarray:
    if img.dtype != dtype:  # an 8-bit chunk among 16-bit ones: scale exactly (x * 257)
        img = img.astype(np.uint16) * 257
    if img.shape[2] == planes:
        return img
    full = np.iinfo(dtype).max
    if img.shape[2] == 3 and planes == 4:
        return np.dstack([img, np.full(img.shape[:2], full, dtype=dtype)])
    raise ValueError(f"cannot combine a {img.shape[2]}-channel chunk into a {planes}-channel frame")


def stitch_files(
    chunks: Sequence[tuple[Rect, Path]],
    width: int,
    height: int,
    out: Path,
    thumbnail: Path | None = None,
) -> None:
    """Stitch chunk PNG files into the frame PNG `out` (written atomically), band by band.

    Only one band of chunks (one row of the grid) is in memory at a time, so a frame of any
    size costs the memory of one band. `thumbnail`, when given, gets a small 8-bit copy made
    on the way. BadChunks names the chunk files that are missing or damaged.
    """
    if not chunks:
        raise ValueError("no chunks to stitch")
    missing = [path for _, path in chunks if not path.is_file()]
    if missing:
        raise BadChunks(missing, "are missing")
    planes, dtype = _frame_format([path for _, path in chunks])
    bands: dict[tuple[int, int], list[tuple[Rect, Path]]] = {}
    for rect, path in chunks:
        bands.setdefault((rect.y0, rect.y1), []).append((rect, path))
    order = sorted(bands)
    if (
        order[0][0] != 0
        or order[-1][1] != height
        or any(a[1] != b[0] for a, b in zip(order, order[1:], strict=False))
    ):
        raise ValueError("the chunks do not cover the frame from top to bottom")
    step = max(1, -(-width // (2 * THUMBNAIL_WIDTH)))  # thumbnail rows/columns kept
    small: list[np.ndarray] = []

    def rows() -> Iterator[np.ndarray]:
        for y0, y1 in order:
            band = np.zeros((y1 - y0, width, planes), dtype=dtype)
            bad = []
            for rect, path in bands[(y0, y1)]:
                try:
                    img = read_png(path)
                except NotAPng:
                    bad.append(path)
                    continue
                if img.shape[0] != rect.height or img.shape[1] != rect.width:
                    bad.append(path)
                    continue
                band[:, rect.x0 : rect.x1] = _match(img, planes, dtype)
            if bad:
                raise BadChunks(bad, "are damaged")
            for i in range(band.shape[0]):
                if (y0 + i) % step == 0:
                    small.append(band[i, ::step].copy())  # a copy: the band can go
                yield band[i].reshape(width * planes).copy()  # pypng may keep a row a while

    write_png_rows(out, width, height, planes, dtype, rows())
    if thumbnail is not None:
        write_thumbnail_array(np.stack(small), thumbnail)


def _frame_format(paths: Sequence[Path]) -> tuple[int, np.dtype]:
    """(channels, dtype) of the stitched frame: the widest of its chunks (by their headers)."""
    planes, deep = 1, False
    bad = []
    for path in paths:
        try:
            _w, _h, depth, colour = png_header(path)
        except NotAPng:
            bad.append(path)
            continue
        planes = max(planes, {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4))
        deep = deep or depth > 8
    if bad:
        raise BadChunks(bad, "are damaged")
    return planes, np.dtype(np.uint16 if deep else np.uint8)


def video_frame(image: np.ndarray) -> np.ndarray:
    """An RGB 8-bit frame of even size for H.264/yuv420p: alpha over black, padded by a pixel."""
    img = to_uint8(image)
    if img.shape[2] in (1, 2):
        grey = img[:, :, :1]
        img = np.dstack([grey, grey, grey] + ([img[:, :, 1:2]] if img.shape[2] == 2 else []))
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.uint16)
        img = ((img[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    height, width = img.shape[:2]
    pad_y, pad_x = height % 2, width % 2
    if pad_x or pad_y:
        img = np.pad(img, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
    return np.ascontiguousarray(img)


def encode_mp4(frames: Iterable[Path], out: Path, fps: float, fps_base: float = 1.0) -> None:
    """An H.264 mp4 (yuv420p, even size) of the frame PNGs in order, at fps / fps_base."""
    import imageio_ffmpeg

    rate = Fraction(fps / fps_base).limit_denominator(1001)
    with replacing(out, ".mp4") as tmp:
        writer = None
        try:
            for path in frames:
                img = video_frame(read_png(path))
                if writer is None:
                    writer = imageio_ffmpeg.write_frames(
                        str(tmp),
                        (img.shape[1], img.shape[0]),
                        fps=float(rate),
                        codec="libx264",
                        pix_fmt_in="rgb24",
                        pix_fmt_out="yuv420p",
                        macro_block_size=1,
                        quality=None,
                        output_params=[
                            "-crf",
                            "18",
                            "-r",
                            f"{rate.numerator}/{rate.denominator}",
                            "-movflags",
                            "+faststart",
                        ],
                        ffmpeg_log_level="error",
                    )
                    writer.send(None)
                writer.send(img)
            if writer is None:
                raise ValueError("no frames to encode")
        finally:
            if writer is not None:
                writer.close()


def write_raw_zip(entries: Iterable[tuple[str, Path]], out: Path) -> None:
    """The raw zip: every chunk under its seed name, stored (PNGs are compressed already)."""
    with (
        replacing(out) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        for name, path in entries:
            zf.write(path, arcname=name)


def write_thumbnail(frame: Path, out: Path) -> None:
    """A small 8-bit PNG of a stitched frame for the dashboard."""
    write_thumbnail_array(read_png(frame), out)


def write_thumbnail_array(image: np.ndarray, out: Path) -> None:
    """A small 8-bit PNG of `image` (any size) for the dashboard."""
    img = to_uint8(image)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[img.shape[2]]
    pil = Image.fromarray(img if img.shape[2] > 1 else img[:, :, 0], mode)
    if pil.width > THUMBNAIL_WIDTH:
        pil = pil.resize((THUMBNAIL_WIDTH, max(1, pil.height * THUMBNAIL_WIDTH // pil.width)))
    with replacing(out) as tmp:
        pil.save(tmp, format="PNG")
