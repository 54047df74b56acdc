"""OpenEXR files as the farm reads and writes them, through the ASWF `OpenEXR` bindings.

A chunk rendered as (multilayer) EXR holds one or more parts (Blender 5 writes one part per
pass, "ViewLayer.Combined", "ViewLayer.Denoising Albedo", ...; Blender 3 one part with every
channel), each with float or half channels of the chunk's size. `stitch_exr` pastes every
channel of every part at the chunk's rectangle into a whole frame of the same layout: values
are copied, never converted or blended, so a stitched pass is bit-identical to the same pass
rendered whole. `read_rgba` and `tone_map` turn a frame into something a screen can show.

Rows are top first, as in a PNG, and chunk rectangles (`tiles.Rect`) are in that orientation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR

from .atomic import replacing
from .errors import BadChunks
from .tiles import Rect

MAGIC = b"\x76\x2f\x31\x01"
# Header attributes that describe one file's pixels, not the picture: never copied over.
_OWN_ATTRIBUTES = frozenset(
    {"channels", "chunkCount", "dataWindow", "displayWindow", "type", "compression", "tiles"}
)
_TYPES = {
    OpenEXR.FLOAT: np.dtype(np.float32),
    OpenEXR.HALF: np.dtype(np.float16),
    OpenEXR.UINT: np.dtype(np.uint32),
}


@dataclass(frozen=True)
class PartLayout:
    """One part of an EXR file: its name and its channels (name, numpy dtype), sorted."""

    name: str
    channels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ExrImage:
    """What an EXR file holds, read whole: its size, and per part its header and channels."""

    width: int
    height: int
    parts: tuple[PartLayout, ...]
    headers: tuple[dict[str, Any], ...]
    pixels: tuple[dict[str, np.ndarray], ...]

    @property
    def layout(self) -> tuple[PartLayout, ...]:
        return self.parts


def is_exr(path: Path) -> bool:
    """Whether `path` starts like an OpenEXR file."""
    with open(path, "rb") as fh:
        return fh.read(4) == MAGIC


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    exr = OpenEXR.File(str(path), separate_channels=True)
    try:
        yield exr
    finally:
        close = getattr(exr, "close", None)
        if close is not None:
            close()


def exr_layout(path: Path) -> tuple[int, int, list[tuple[str, frozenset[str]]]]:
    """(width, height, [(part name, channel names)]) from an EXR's headers alone, without
    reading pixels: what a file says it holds. ValueError when it is not a readable EXR or
    its parts differ in size."""
    if not path.is_file() or not is_exr(path):
        raise ValueError(f"{path.name} is not an OpenEXR file")
    try:
        exr = OpenEXR.File(str(path), header_only=True)
        parts, sizes = [], set()
        for part in exr.parts:
            (x0, y0), (x1, y1) = (tuple(int(v) for v in c) for c in part.header["dataWindow"])
            sizes.add((x1 - x0 + 1, y1 - y0 + 1))
            names = frozenset(str(c.name) for c in part.header.get("channels", ()))
            parts.append((str(part.name()), names))
    except Exception as exc:  # the bindings raise RuntimeError/OSError on damaged files
        raise ValueError(f"{path.name} is damaged: {exc}") from None
    if len(sizes) != 1:
        raise ValueError(f"{path.name}: its parts differ in size" if sizes else "no parts")
    (width, height) = sizes.pop()
    return width, height, parts


def read_exr(path: Path) -> ExrImage:
    """Read every part and channel of `path`; ValueError when it is not a readable EXR, when
    any part its headers declare cannot be read whole (a cut-off file), or when its parts
    differ in size (the farm's chunks never do)."""
    _w, _h, declared = exr_layout(path)
    try:
        with _opened(path) as exr:
            parts, headers, pixels = [], [], []
            size: tuple[int, int] | None = None
            for part in exr.parts:
                chans = {name: np.asarray(ch.pixels) for name, ch in part.channels.items()}
                if not chans:
                    continue
                shapes = {a.shape[:2] for a in chans.values()}
                if len(shapes) != 1 or any(a.ndim != 2 for a in chans.values()):
                    raise ValueError(f"{path.name}: channels of part {part.name()} differ in size")
                (h, w) = shapes.pop()
                if size is not None and size != (w, h):
                    raise ValueError(f"{path.name}: its parts differ in size")
                size = (w, h)
                parts.append(
                    PartLayout(
                        str(part.name()), tuple(sorted((n, a.dtype.str) for n, a in chans.items()))
                    )
                )
                headers.append(
                    {k: v for k, v in dict(part.header).items() if k not in _OWN_ATTRIBUTES}
                )
                pixels.append(chans)
    except ValueError:
        raise
    except Exception as exc:  # the bindings raise RuntimeError/OSError on damaged files
        raise ValueError(f"{path.name} is damaged: {exc}") from None
    if size is None:
        raise ValueError(f"{path.name} holds no pixels")
    read = [(part.name, frozenset(n for n, _ in part.channels)) for part in parts]
    if read != [(name, chans) for name, chans in declared if chans]:
        raise ValueError(f"{path.name} is damaged: some of its parts cannot be read")
    return ExrImage(size[0], size[1], tuple(parts), tuple(headers), tuple(pixels))


def write_exr(
    out: Path,
    parts: Sequence[tuple[str, Mapping[str, np.ndarray], Mapping[str, Any]]],
    compression: Any = OpenEXR.ZIP_COMPRESSION,
    durable: bool = True,
) -> None:
    """Write `parts` (name, channels, extra header attributes) to `out`, atomically (and on
    the disk unless `durable` is False: a scratch file). One part is written as a plain
    single-part file; several as a multipart file."""
    built = []
    for name, channels, header in parts:
        head = dict(header)
        head["compression"] = compression
        head["type"] = OpenEXR.scanlineimage
        chans = {n: np.ascontiguousarray(a) for n, a in channels.items()}
        built.append(OpenEXR.Part(head, chans, name) if len(parts) > 1 else (head, chans))
    with replacing(out, durable=durable) as tmp:
        if len(parts) == 1:
            head, chans = built[0]
            exr = OpenEXR.File(head, chans)
        else:
            exr = OpenEXR.File(built)
        exr.write(str(tmp))


def stitch_exr(
    chunks: Sequence[tuple[Rect, Path]],
    width: int,
    height: int,
    out: Path,
    compression: Any = OpenEXR.ZIP_COMPRESSION,
) -> None:
    """Stitch EXR chunk files into one `width`x`height` EXR `out` of the same parts and
    channels, every value copied exactly (`compression`: a lossless one keeps them so).
    BadChunks names files that are missing, damaged, of the wrong size, or whose
    parts/channels differ from the first chunk's."""
    if not chunks:
        raise ValueError("no chunks to stitch")
    missing = [path for _, path in chunks if not path.is_file()]
    if missing:
        raise BadChunks(missing, "are missing")
    frame: list[dict[str, np.ndarray]] = []
    layout: tuple[PartLayout, ...] = ()
    headers: tuple[dict[str, Any], ...] = ()
    bad: list[Path] = []
    for rect, path in chunks:
        try:
            img = read_exr(path)
        except ValueError:
            bad.append(path)
            continue
        if (img.width, img.height) != (rect.width, rect.height):
            bad.append(path)
            continue
        if not frame:
            layout, headers = img.parts, img.headers
            frame = [
                {n: np.zeros((height, width), dtype=a.dtype) for n, a in chans.items()}
                for chans in img.pixels
            ]
        elif img.parts != layout:
            bad.append(path)
            continue
        for part, chans in zip(frame, img.pixels, strict=True):
            for name, values in chans.items():
                part[name][rect.y0 : rect.y1, rect.x0 : rect.x1] = values
    if bad:
        raise BadChunks(bad, "are damaged or do not match the others")
    write_exr(
        out,
        [(lay.name, chans, head) for lay, chans, head in zip(layout, frame, headers, strict=True)],
        compression,
    )


def combined_channels(img: ExrImage) -> dict[str, np.ndarray]:
    """The colour of an EXR image as {"R","G","B"[,"A"]}: the Combined pass of a multilayer
    file (its first view layer), else the plain R, G, B (and A) channels."""
    found: dict[str, np.ndarray] = {}
    for chans in img.pixels:
        for name, values in chans.items():
            base = name.rsplit(".", 1)
            letter = base[-1]
            if letter not in "RGBA" or len(letter) != 1:
                continue
            prefix = base[0] if len(base) == 2 else ""
            if prefix and not prefix.endswith("Combined") and prefix != "Image":
                continue
            found.setdefault(letter, values)
    if not {"R", "G", "B"} <= set(found):
        raise ValueError("the EXR image has no RGB colour channels")
    return found


def read_rgba(path: Path) -> np.ndarray:
    """The colour of an EXR file as a float32 (height, width, 4) array (alpha 1 if absent)."""
    chans = combined_channels(read_exr(path))
    alpha = chans.get("A")
    if alpha is None:
        alpha = np.ones_like(chans["R"], dtype=np.float32)
    return np.dstack([chans[c].astype(np.float32) for c in "RGB"] + [alpha.astype(np.float32)])


def tone_map(rgba: np.ndarray) -> np.ndarray:
    """Linear scene colour as 8-bit sRGB for a screen (a preview, a video frame): values are
    clipped to 0..1 and given the sRGB transfer curve; alpha is kept linear. The scene's own
    view transform is applied by Blender for display formats; this is only for looking."""
    rgb = np.clip(np.nan_to_num(rgba[..., :3], nan=0.0), 0.0, 1.0)
    srgb = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    out = np.empty(rgba.shape[:2] + (rgba.shape[2],), dtype=np.uint8)
    out[..., :3] = np.round(srgb * 255)
    if rgba.shape[2] == 4:
        out[..., 3] = np.round(np.clip(np.nan_to_num(rgba[..., 3]), 0.0, 1.0) * 255)
    return out
