"""The live preview: a frame as stitched so far, small enough for a screen, from the chunks in.

A preview is an 8-bit RGBA PNG at most `PREVIEW_SIZE` pixels on its longer side. Chunks not
yet in are transparent (the dashboard shows a checker there). Every chunk is scaled on its own
into its own rectangle of the small canvas, so a 16k still never has a full-size frame in
memory: only one chunk at a time. PNG chunks are pasted as they are (16-bit scaled to 8);
EXR chunks, plain or raw multilayer, show their Combined colour through `exr.tone_map`.

Built previews are kept next to the project (`preview/<frame>.png` and a note of the chunk
files in them); a preview is rebuilt only when a chunk of its frame landed or changed, and
then only the chunks that are new are read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import replacing
from ..errors import BadInput, NotFound
from ..exr import is_exr, read_rgba, tone_map
from ..pngio import NotAPng, decode_png, read_png, to_uint8
from ..tiles import Rect, chunk_rect
from .files import DataDir
from .store import Store

log = logging.getLogger("blendfarm.server")

PREVIEW_SIZE = 1024  # pixels on the longer side, at most
CHUNK_EXTS = ("png", "exr")

# -- which frame, and where its chunks go (pure) ------------------------------------------------


@dataclass(frozen=True)
class FrameProgress:
    """One frame's chunks at a glance: how many, done and rendering, and when one last started
    or finished (0 when none has)."""

    frame: int
    total: int
    done: int
    rendering: int
    last_activity: float


def current_frame(frames: Iterable[FrameProgress]) -> int | None:
    """The frame a preview shows when none is asked for.

    The unfinished frame with chunks in that was worked on last (it is growing); else the
    frame that was finished last (so a 1x1 animation shows its newest frame, not a blank one
    between frames); else a frame whose first chunks are rendering; None when nothing started.
    """
    growing, finished, starting = [], [], []
    for f in frames:
        key = (f.last_activity, f.frame)
        if f.total and f.done >= f.total:
            finished.append(key)
        elif f.done:
            growing.append(key)
        elif f.rendering:
            starting.append(key)
    for keys in (growing, finished, starting):
        if keys:
            return max(keys)[1]
    return None


def preview_size(width: int, height: int, limit: int = PREVIEW_SIZE) -> tuple[int, int]:
    """The preview's size for a `width`x`height` frame: the frame scaled down (never up) to
    at most `limit` pixels on its longer side, each side at least 1."""
    if width < 1 or height < 1:
        raise ValueError(f"frame size {width}x{height} is empty")
    longer = max(width, height)
    if longer <= limit:
        return width, height
    return max(1, (width * limit + longer // 2) // longer), max(
        1, (height * limit + longer // 2) // longer
    )


def canvas_rect(rect: Rect, width: int, height: int, cw: int, ch: int) -> Rect:
    """Where a frame rectangle lands on a `cw`x`ch` canvas of a `width`x`height` frame.

    Edges are scaled with the same rounding for every chunk, so the chunks of a frame tile
    the canvas without gaps or overlaps (a chunk narrower than a canvas pixel may get none)."""
    return Rect(
        rect.x0 * cw // width,
        rect.y0 * ch // height,
        rect.x1 * cw // width,
        rect.y1 * ch // height,
    )


def as_rgba8(image: np.ndarray) -> np.ndarray:
    """An (h, w, 1..4) uint8/uint16 image as 8-bit RGBA (grey spread, opaque if no alpha)."""
    img = to_uint8(image)
    planes = img.shape[2]
    colour = img[:, :, :3] if planes >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    if planes in (2, 4):
        alpha = img[:, :, planes - 1 :]
    else:
        alpha = np.full(img.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([colour, alpha], axis=2))


def paste_scaled(canvas: np.ndarray, chunk: np.ndarray, box: Rect) -> None:
    """Scale an 8-bit RGBA chunk to `box` (area average, alpha-weighted) and put it there."""
    if box.width < 1 or box.height < 1:
        return
    img = Image.fromarray(chunk, "RGBA")
    if img.size != (box.width, box.height):
        img = img.resize((box.width, box.height), Image.Resampling.BOX)
    canvas[box.y0 : box.y1, box.x0 : box.x1] = np.asarray(img)


def clear(canvas: np.ndarray, box: Rect) -> None:
    canvas[box.y0 : box.y1, box.x0 : box.x1] = 0


# -- chunk files ---------------------------------------------------------------------------------


def read_chunk(source: Path | bytes) -> np.ndarray:
    """A chunk file (or a PNG chunk's bytes) as 8-bit RGBA for a screen: PNG as it is, EXR
    tone-mapped. ValueError when it cannot be read."""
    if isinstance(source, Path) and (source.suffix == ".exr" or is_exr(source)):
        return np.ascontiguousarray(tone_map(read_rgba(source)))
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as pil:
            if pil.mode in ("RGBA", "RGB", "L", "LA", "P"):  # 8-bit: Pillow decodes it fast
                return np.asarray(pil.convert("RGBA"))
    except (OSError, ValueError):
        pass
    try:
        if isinstance(source, bytes):
            return as_rgba8(decode_png(source, "the chunk"))
        return as_rgba8(read_png(source))
    except NotAPng as exc:
        raise ValueError(str(exc)) from None


def chunk_files(chunks: Path, frame: int, tiles: int) -> dict[tuple[int, int], Path]:
    """The chunk files of `frame` in a project's chunk folder, by (row, col): PNG or EXR
    (the newer when both are there)."""
    found: dict[tuple[int, int], tuple[int, Path]] = {}
    for ext in CHUNK_EXTS:
        for path in chunks.glob(f"{frame}-*-*.{ext}"):
            parts = path.name[: -len(ext) - 1].split("-")
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                continue  # another frame's (a negative number), or not ours
            row, col = int(parts[1]), int(parts[2])
            if int(parts[0]) != frame or not (0 <= row < tiles and 0 <= col < tiles):
                continue
            try:
                stamp = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if (row, col) not in found or stamp > found[(row, col)][0]:
                found[(row, col)] = (stamp, path)
    return {key: path for key, (_stamp, path) in found.items()}


def _signature(path: Path) -> str:
    st = path.stat()
    return f"{path.suffix}:{st.st_mtime_ns}:{st.st_size}"


# -- the service -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """A built preview: its PNG, the frame it shows, its chunks in and in all, and its tag
    (changes whenever a chunk of the frame lands)."""

    png: bytes
    frame: int
    chunks_in: int
    chunks_total: int
    etag: str


@dataclass(frozen=True)
class _Plan:
    frame: int
    width: int
    height: int
    tiles: int
    # (row, col) -> (its file, or its task's id when the database holds it; a signature)
    files: dict[tuple[int, int], tuple[Path | int, str]]
    etag: str


class Previews:
    """Builds, caches and hands out previews; reads the store and the data dir only."""

    def __init__(self, store: Store, data: DataDir):
        self.store = store
        self.data = data
        self._lock = threading.Lock()

    def etag(self, pid: str, frame: str | None) -> str:
        """The tag the preview would have now (cheap: no image is read)."""
        return self._plan(pid, frame).etag

    def preview(self, pid: str, frame: str | None) -> Preview:
        """The preview of `frame` (a query parameter's text) or of the current frame.
        NotFound for no project (or none whose scene was read yet); BadInput for a frame that
        is not a number of the project's range."""
        plan = self._plan(pid, frame)
        folder = self.data.project_dir(pid) / "preview"
        png, note = folder / f"{plan.frame}.png", folder / f"{plan.frame}.json"
        with self._lock:
            kept = _read_note(note)
            if kept.get("etag") == plan.etag and png.is_file():
                body = png.read_bytes()
            else:
                body = self._build(plan, png, note, kept)
        return Preview(body, plan.frame, len(plan.files), plan.tiles * plan.tiles, plan.etag)

    def _plan(self, pid: str, asked: str | None) -> _Plan:
        row = self.store.projects.get(pid)
        if row.width is None or row.height is None:
            raise NotFound(f"project {pid} has no preview yet: no node has read its scene")
        first = row.frame_start if row.frame_start is not None else 1
        last = row.frame_end if row.frame_end is not None else first
        if asked is None:
            progress = [FrameProgress(*f) for f in self.store.projects.frame_progress(pid)]
            frame = current_frame(progress)
            if frame is None:
                frame = progress[0].frame if progress else first
        else:
            try:
                frame = int(asked)
            except ValueError:
                raise BadInput(f"frame must be a whole number, not {asked[:40]!r}") from None
            if not first <= frame <= last:
                raise BadInput(f"frame {frame} is not rendered by project {pid} ({first}-{last})")
        found = chunk_files(self.data.project_dir(pid) / "chunks", frame, row.tiles)
        files: dict[tuple[int, int], tuple[Path | int, str]] = {}
        for key, path in sorted(found.items()):
            try:
                files[key] = (path, _signature(path))
            except FileNotFoundError:
                continue
        for (_f, r, c), held in self.store.images.held(pid, frame).items():
            files[r, c] = (held.task_id, held.signature)  # it is the chunk, whatever the files
        files = dict(sorted(files.items()))
        digest = hashlib.sha256(
            json.dumps(
                [row.width, row.height, row.tiles, sorted(files.items())], default=str
            ).encode()
        ).hexdigest()[:16]
        tag = f"{frame}-{len(files)}-{digest}"
        return _Plan(frame, row.width, row.height, row.tiles, files, tag)

    def _build(self, plan: _Plan, png: Path, note: Path, kept: Mapping[str, object]) -> bytes:
        """Paste what changed since the kept preview (or everything) and keep the result."""
        w, h, n = plan.width, plan.height, plan.tiles
        cw, ch = preview_size(w, h)
        had = kept.get("chunks") if kept.get("size") == [cw, ch, n] else None
        pasted: dict[str, str] = dict(had) if isinstance(had, dict) else {}
        canvas = _read_canvas(png, cw, ch) if pasted else None
        if canvas is None:
            canvas, pasted = np.zeros((ch, cw, 4), dtype=np.uint8), {}
        wanted = {f"{r}-{c}": sig for (r, c), (_path, sig) in plan.files.items()}
        for name in [k for k in pasted if wanted.get(k) != pasted[k]]:
            r, c = (int(x) for x in name.split("-"))
            clear(canvas, canvas_rect(chunk_rect(w, h, n, r, c), w, h, cw, ch))
            del pasted[name]
        for (r, c), (source, sig) in plan.files.items():
            name = f"{r}-{c}"
            if pasted.get(name) == sig:
                continue
            box = canvas_rect(chunk_rect(w, h, n, r, c), w, h, cw, ch)
            image = source if isinstance(source, Path) else self.store.images.image(source)
            try:
                if image is None:
                    raise ValueError("it was rendered again meanwhile")
                paste_scaled(canvas, read_chunk(image), box)
            except (OSError, ValueError) as exc:
                log.warning(
                    "preview: chunk %s of frame %d is unreadable (%s); left out",
                    name,
                    plan.frame,
                    exc,
                )
                clear(canvas, box)
            pasted[name] = sig  # a bad file is not read again until it changes
        buf = io.BytesIO()
        Image.fromarray(canvas, "RGBA").save(buf, format="PNG", compress_level=3)
        body = buf.getvalue()
        try:  # never below a project deleted meanwhile: its folder is not made again
            png.parent.mkdir(exist_ok=True)
            with replacing(png, durable=False) as tmp:
                tmp.write_bytes(body)
            with replacing(note, durable=False) as tmp:
                kept_note = {"etag": plan.etag, "size": [cw, ch, n], "chunks": pasted}
                tmp.write_text(json.dumps(kept_note))
        except FileNotFoundError:
            pass
        return body


def _read_note(note: Path) -> dict[str, object]:
    try:
        kept = json.loads(note.read_text())
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _read_canvas(png: Path, cw: int, ch: int) -> np.ndarray | None:
    try:
        with Image.open(png) as pil:
            if pil.size != (cw, ch) or pil.mode != "RGBA":
                return None
            return np.array(pil)
    except (OSError, ValueError):
        return None
