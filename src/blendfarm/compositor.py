"""Stitching chunks into frames, frames into an mp4, chunks into the raw zip.

Chunks are pasted at their exact rectangles, never blended: overlapping alpha would add up.
Work is on numpy arrays so 16-bit depth and alpha survive. `stitch_chunks` stitches a frame's
chunks by their kind (formats.ChunkKind): PNG chunks into the scene's display format, EXR
chunks into the scene's OpenEXR, raw chunks into the frame's passes for its finish task.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
from PIL import Image

from .atomic import fsync_file, replacing
from .errors import BadChunks
from .exr import read_rgba, stitch_exr, tone_map
from .formats import ChunkKind, OutputFormat
from .frame_files import convert_png, display_image
from .pngio import NotAPng, decode_png, png_header, png_header_of, to_uint8, write_png_rows
from .tiles import Rect

THUMBNAIL_WIDTH = 320
PRELOAD = 64 * 1024**2  # chunk bytes read at once before stitching (opening a file costs)


def chunk_name(project_id: str, frame: int, row: int, col: int, ext: str = "png") -> str:
    """The seed's name of a raw chunk: `<project id>-<frame number>-<row>-<column>.<ext>`."""
    return f"{project_id}-{frame}-{row}-{col}.{ext}"


EXR_CODECS = {
    "NONE": OpenEXR.NO_COMPRESSION,
    "ZIP": OpenEXR.ZIP_COMPRESSION,
    "ZIPS": OpenEXR.ZIPS_COMPRESSION,
    "PIZ": OpenEXR.PIZ_COMPRESSION,
    "RLE": OpenEXR.RLE_COMPRESSION,
}


def stitch_chunks(
    kind: ChunkKind,
    chunks: Sequence[tuple[Rect, Path]],
    width: int,
    height: int,
    out: Path,
    output: OutputFormat,
    thumbnail: Path | None = None,
    held: Mapping[Path, bytes] | None = None,
) -> None:
    """Stitch one frame's chunks, all of `kind`, into `out`: the final frame for png (PNG, or
    converted to the scene's JPEG or TIFF by `out`'s extension) and exr (every part and
    channel exact, in the scene's codec when it is lossless), the frame's passes for raw.
    `held`: PNG chunks given as their bytes (kept in the server's database), by the path
    that names them. BadChunks names chunk files that are missing or damaged."""
    if held and kind != "png":
        raise ValueError("only PNG chunks are held in memory")
    if kind == "png":
        if out.suffix == ".png":
            stitch_files(chunks, width, height, out, thumbnail, held)
            return
        stitched = out.with_name(f".{out.name}.{secrets.token_hex(4)}.stitched.png")
        try:
            stitch_files(chunks, width, height, stitched, thumbnail, held)
            convert_png(stitched, output, out)
        finally:
            stitched.unlink(missing_ok=True)
        return
    codec = EXR_CODECS[output.lossless_exr_codec if kind == "exr" else "ZIP"]
    stitch_exr(chunks, width, height, out, compression=codec)
    if thumbnail is not None:
        write_thumbnail_array(tone_map(read_rgba(out)), thumbnail)


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
    held: Mapping[Path, bytes] | None = None,
) -> None:
    """Stitch chunk PNG files into the frame PNG `out` (written atomically), band by band.

    Only one band of chunks (one row of the grid) is in memory at a time, so a frame of any
    size costs the memory of one band. `thumbnail`, when given, gets a small 8-bit copy made
    on the way. `held` gives some chunks as bytes instead of files, by the path naming them.
    BadChunks names the chunk files that are missing or damaged.
    """
    if not chunks:
        raise ValueError("no chunks to stitch")
    loaded: dict[Path, bytes] = dict(held or {})  # chunks in memory: each file opened once
    on_disk = [path for _, path in chunks if path not in loaded]
    missing = [path for path in on_disk if not path.is_file()]
    if missing:
        raise BadChunks(missing, "are missing")
    if sum(path.stat().st_size for path in on_disk) <= PRELOAD:
        loaded.update((path, path.read_bytes()) for path in on_disk)
    planes, dtype = _frame_format([path for _, path in chunks], loaded)
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
                    data = loaded.pop(path, None)
                    img = decode_png(path.read_bytes() if data is None else data, path.name)
                except NotAPng:
                    bad.append(path)
                    continue
                if img.shape[0] != rect.height or img.shape[1] != rect.width:
                    bad.append(path)
                    continue
                band[:, rect.x0 : rect.x1] = _match(img, planes, dtype)
            if bad:
                raise BadChunks(bad, "are damaged")
            small.append(band[-y0 % step :: step, ::step].copy())  # a copy: the band can go
            yield band.reshape(y1 - y0, width * planes)

    write_png_rows(out, width, height, planes, dtype, rows())
    if thumbnail is not None:
        write_thumbnail_array(np.concatenate(small), thumbnail)


def _frame_format(paths: Sequence[Path], loaded: dict[Path, bytes]) -> tuple[int, np.dtype]:
    """(channels, dtype) of the stitched frame: the widest of its chunks (by their headers,
    from the `loaded` bytes of a chunk when they are there)."""
    planes, deep = 1, False
    bad = []
    for path in paths:
        try:
            data = loaded.get(path)
            _w, _h, depth, colour = png_header(path) if data is None else png_header_of(data, "")
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


class Mp4Writer:
    """An H.264 mp4 (yuv420p, even size, at fps / fps_base) written frame by frame as the
    frames come, so it is finished moments after the last one. Frames of any of the farm's
    formats (exr.tone_map for EXR). `finish` puts it at `out` (atomically, on the disk);
    `abort` drops it."""

    def __init__(self, out: Path, fps: float, fps_base: float = 1.0):
        self.out = out
        self.rate = Fraction(fps / fps_base).limit_denominator(1001)
        self.tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp.mp4")
        self.frames = 0
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def add(self, frame: Path) -> None:
        """Encode the next frame (a frame file)."""
        self.add_image(display_image(frame))

    def add_image(self, image: np.ndarray) -> None:
        img = video_frame(image)
        size = (img.shape[1], img.shape[0])
        if self._writer is None:
            import imageio_ffmpeg

            self._size = size
            self._writer = imageio_ffmpeg.write_frames(
                str(self.tmp),
                size,
                fps=float(self.rate),
                codec="libx264",
                pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p",
                macro_block_size=1,
                quality=None,
                output_params=[
                    "-crf",
                    "18",
                    "-r",
                    f"{self.rate.numerator}/{self.rate.denominator}",
                    "-movflags",
                    "+faststart",
                ],
                ffmpeg_log_level="error",
            )
            self._writer.send(None)
        elif size != self._size:
            raise ValueError(f"a frame of {size[0]}x{size[1]} in a video of {self._size}")
        self._writer.send(img)
        self.frames += 1

    def finish(self) -> None:
        if self._writer is None:
            raise ValueError("no frames to encode")
        try:
            self._writer.close()
            self._writer = None
            fsync_file(self.tmp)
            os.replace(self.tmp, self.out)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop the encoder (if running) and remove what it wrote."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # the encoder failed: what it wrote is dropped anyway
                pass
        self.tmp.unlink(missing_ok=True)


def encode_mp4(frames: Iterable[Path], out: Path, fps: float, fps_base: float = 1.0) -> None:
    """An H.264 mp4 (yuv420p, even size) of the frame files in order, at fps / fps_base."""
    video = Mp4Writer(out, fps, fps_base)
    try:
        for path in frames:
            video.add(path)
        video.finish()
    finally:
        video.abort()


def write_raw_zip(entries: Iterable[tuple[str, Path | bytes]], out: Path) -> None:
    """A zip of files (or bytes) under the names given, stored (images are compressed
    already): the raw chunks under their seed names, an animation's frames."""
    with (
        replacing(out) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        for name, source in entries:
            if isinstance(source, bytes):
                zf.writestr(name, source)
            else:
                zf.write(source, arcname=name)


def write_thumbnail(frame: Path, out: Path) -> None:
    """A small 8-bit PNG of a frame file (any of the farm's formats) for the dashboard."""
    write_thumbnail_array(display_image(frame), out)


def write_thumbnail_array(image: np.ndarray, out: Path) -> None:
    """A small 8-bit PNG of `image` (any size) for the dashboard."""
    img = to_uint8(image)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[img.shape[2]]
    pil = Image.fromarray(img if img.shape[2] > 1 else img[:, :, 0], mode)
    if pil.width > THUMBNAIL_WIDTH:
        pil = pil.resize((THUMBNAIL_WIDTH, max(1, pil.height * THUMBNAIL_WIDTH // pil.width)))
    with replacing(out) as tmp:
        pil.save(tmp, format="PNG")
