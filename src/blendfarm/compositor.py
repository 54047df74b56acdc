"""Stitching chunks into frames, frames into an mp4, chunks into the raw zip.

Chunks are pasted at their exact rectangles, never blended: overlapping alpha would add up.
Work is on numpy arrays so 16-bit depth and alpha survive.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import replacing
from .pngio import read_png, to_uint8, write_png
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


def stitch_files(chunks: Sequence[tuple[Rect, Path]], width: int, height: int, out: Path) -> None:
    """Stitch chunk PNG files into the frame PNG `out` (written atomically)."""
    write_png(out, stitch([(rect, read_png(path)) for rect, path in chunks], width, height))


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
    img = to_uint8(read_png(frame))
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[img.shape[2]]
    pil = Image.fromarray(img if img.shape[2] > 1 else img[:, :, 0], mode)
    if pil.width > THUMBNAIL_WIDTH:
        pil = pil.resize((THUMBNAIL_WIDTH, max(1, pil.height * THUMBNAIL_WIDTH // pil.width)))
    with replacing(out) as tmp:
        pil.save(tmp, format="PNG")
