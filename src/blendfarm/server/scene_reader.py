"""What a .blend renders, read from the file itself without Blender (blender-asset-tracer).

At submit the server reads the active scene's resolution, percentage, frame range and rate,
so a project's chunks exist before any node has opened the file. The reading is careful and
modest: a scene it cannot be sure of (a file it cannot parse, a scene linked from a library,
animation on the scene that may change its settings, Python registered to run on load, no
camera, several windows showing different scenes) reads as None, and the project starts with
the probe as before. Nothing here trusts the file: sizes, counts and lists are bounded before
blender-asset-tracer walks them, and every failure is a None, never an exception.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

from blender_asset_tracer.blendfile import BlendFile, BlendFileBlock
from blender_asset_tracer.blendfile.header import BlendFileHeader

log = logging.getLogger("blendfarm.server")
# A file b-a-t cannot read is answered by the probe instead: its own warnings ("seems to be
# truncated", ...) would only say so to the server's log once per hostile upload.
logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)

READ_LIMIT = 2 * 1024**3  # bytes of (decompressed) .blend read at submit; bigger: the probe
MAX_BLOCKS = 1_000_000  # blocks in one file (a production file has a few hundred thousand)
MAX_DNA = 4 * 1024**2  # bytes of the file's DNA catalogue (Blender 3.4 and 5.0: ~130 KB)
MAX_DNA_ITEMS = 1 << 16  # names, types and structs in the catalogue (indexed by shorts)
MAX_WINDOWS = 64
TXT_ISSCRIPT = 1 << 4  # Text.flags: registered to run when the file is loaded (use_module)
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class SceneFacts:
    """The render settings of a .blend's active scene, as stored in the file."""

    scene: str  # its name, without Blender's "SC" prefix
    resolution_x: int
    resolution_y: int
    resolution_percentage: int
    frame_start: int
    frame_end: int
    frame_step: int
    fps: int
    fps_base: float
    camera: bool
    engine: str

    def as_probe(self) -> dict[str, Any]:
        """The facts under the names a probe reports them (validate.plan_from_probe)."""
        return asdict(self)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Unreadable(Exception):
    """The file is not one this module reads with confidence (never leaves this module)."""


def read_scene(path: Path, limit: int = READ_LIMIT) -> SceneFacts | None:
    """The active scene of the .blend at `path` (plain, or gzip or zstd decompressed through
    a temporary file next to it); None when unsure."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(0)
            if head.startswith(GZIP_MAGIC) or head.startswith(ZSTD_MAGIC):
                return _read_through(fh, head, path.parent, limit)
        return _read_plain(path, limit)
    except Exception as exc:  # whatever the file does to the parser: the probe reads it
        log.info("the scene of %s is left to the probe: %s", path.name, _why(exc))
        return None


def read_scene_in_zip(
    archive: Path, member: str, folder: Path, limit: int = READ_LIMIT
) -> SceneFacts | None:
    """The active scene of .blend `member` of the zip `archive`, read through a temporary
    file in `folder` (decompressed as it is copied out; removed after); None when unsure."""
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
            head = cast(zipfile.ZipExtFile, src).peek(8)[:8]
            return _read_through(src, head, folder, limit)
    except Exception as exc:
        log.info("the scene of %s is left to the probe: %s", member, _why(exc))
        return None


def _read_through(src: IO[bytes], head: bytes, folder: Path, limit: int) -> SceneFacts:
    """Copy the .blend in `src` (decompressed) to a temporary file in `folder` and read it."""
    fd, name = tempfile.mkstemp(dir=folder, suffix=".blend")
    scratch = Path(name)
    try:
        with open(fd, "wb") as out:
            _copy(_decompressed(src, head), out, limit)
        return _read_plain(scratch, limit)
    finally:
        scratch.unlink(missing_ok=True)


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _decompressed(stream: IO[bytes], head: bytes) -> _Readable:
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream)
    return stream


def _copy(src: _Readable, out: IO[bytes], limit: int) -> None:
    """Copy at most `limit` bytes; Unreadable when there are more."""
    copied = 0
    while block := src.read(COPY_BLOCK):
        copied += len(block)
        if copied > limit:
            raise Unreadable(f"the .blend is larger than {limit} bytes")
        out.write(block)


# -- the uncompressed file ------------------------------------------------------------------


def _read_plain(path: Path, limit: int) -> SceneFacts:
    size = path.stat().st_size
    if size > limit:
        raise Unreadable(f"the .blend is larger than {limit} bytes")
    with open(path, "rb") as fh:
        if fh.read(7) != b"BLENDER":
            raise Unreadable("not an uncompressed .blend")
        _check_blocks(fh, path, size)
    with BlendFile(path) as bf:
        return _active_scene_facts(bf)


def _check_blocks(fh: IO[bytes], path: Path, size: int) -> None:
    """Walk the block headers before blender-asset-tracer does: every block lies inside the
    file, there are not too many, and the DNA catalogue is of a sane size (a hostile file
    could otherwise send the parser in circles or through billions of names)."""
    header = BlendFileHeader(fh, path)
    shape, _fields = header.create_block_header_struct()
    code_at = 0
    len_at = 3 if header.file_format_version == 1 else 1  # LargeBHead8 keeps len 4th
    pos = fh.tell()
    for _ in range(MAX_BLOCKS):
        fh.seek(pos)
        raw = fh.read(shape.size)
        if len(raw) < shape.size:
            return  # truncated: blender-asset-tracer stops there as Blender does
        fields = shape.unpack(raw)
        code, length = fields[code_at], int(fields[len_at])
        if code.startswith(b"ENDB"):
            return
        start = pos + shape.size
        if length < 0 or start + length > size:
            raise Unreadable("a block runs past the end of the file")
        if code.startswith(b"DNA1"):
            if length > MAX_DNA:
                raise Unreadable("the DNA catalogue is too large")
            fh.seek(start)
            _check_dna(fh.read(length), header.is_little_endian)
        pos = start + length
    raise Unreadable(f"more than {MAX_BLOCKS} blocks")


def _check_dna(data: bytes, little: bool) -> None:
    """Counts of names, types and structs a short can index, each list inside the block."""
    u32 = struct.Struct("<I" if little else ">I")
    offset = 8  # "SDNA" "NAME"
    for label in (b"NAME", b"TYPE"):
        if data[offset - 4 : offset] != label:
            raise Unreadable("the DNA catalogue is not laid out as expected")
        count = u32.unpack_from(data, offset)[0]
        if count > MAX_DNA_ITEMS:
            raise Unreadable("the DNA catalogue lists too many items")
        offset += 4
        for _ in range(count):
            end = data.find(b"\0", offset)
            if end < 0:
                raise Unreadable("the DNA catalogue is cut off")
            offset = end + 1
        offset = (offset + 3) & ~3
        offset += 4  # the next label
    # TLEN (a short per type) then STRC: b-a-t reads past the end with an exception.
    if len(data) < offset:
        raise Unreadable("the DNA catalogue is cut off")


# -- the scene --------------------------------------------------------------------------------


def _active_scene_facts(bf: BlendFile) -> SceneFacts:
    scene = _active_scene(bf)
    if scene.get((b"id", b"lib")):
        raise Unreadable("the active scene is linked from a library")
    if scene.get(b"adt"):
        raise Unreadable("the scene is animated or has drivers (its settings may change)")
    for text in bf.find_blocks_from_code(b"TX"):
        if int(text.get(b"flags")) & TXT_ISSCRIPT:
            raise Unreadable("a text block is registered to run when the file is loaded")
    engine = scene.get((b"r", b"engine"), as_str=True)
    facts = SceneFacts(
        scene=_name(scene),
        resolution_x=int(scene.get((b"r", b"xsch"))),
        resolution_y=int(scene.get((b"r", b"ysch"))),
        resolution_percentage=int(scene.get((b"r", b"size"))),
        frame_start=int(scene.get((b"r", b"sfra"))),
        frame_end=int(scene.get((b"r", b"efra"))),
        frame_step=int(scene.get((b"r", b"frame_step"))),
        fps=int(scene.get((b"r", b"frs_sec"))),
        fps_base=float(scene.get((b"r", b"frs_sec_base"))),
        camera=bool(scene.get(b"camera")),
        engine=str(engine),
    )
    if not facts.camera:
        raise Unreadable("the scene has no camera (the probe tells why it cannot render)")
    if not (math.isfinite(facts.fps_base) and facts.fps_base > 0 and facts.fps > 0):
        raise Unreadable("the frame rate is not a positive number")
    return facts


def _active_scene(bf: BlendFile) -> BlendFileBlock:
    """The scene Blender opens the file with: the one its windows show (the file's global
    `curscene`), else the only scene there is."""
    scenes = bf.find_blocks_from_code(b"SC")
    globs = bf.find_blocks_from_code(b"GLOB")
    current = globs[0].get_pointer(b"curscene") if globs else None
    if current is None:
        if len(scenes) != 1:
            raise Unreadable("the file names no current scene")
        current = scenes[0]
    if current.code != b"SC":
        raise Unreadable("the current scene is not a scene")
    shown = _window_scenes(bf)
    if shown and shown != {current.addr_old}:
        raise Unreadable("the file's windows show other scenes")
    return current


def _window_scenes(bf: BlendFile) -> set[int]:
    """The scenes (by address) the file's windows show."""
    shown: set[int] = set()
    for wm in bf.find_blocks_from_code(b"WM"):
        window = wm.get_pointer((b"windows", b"first"))
        seen: set[int] = set()
        while window is not None and window.addr_old not in seen:
            if len(seen) >= MAX_WINDOWS:
                raise Unreadable("too many windows")
            seen.add(window.addr_old)
            address = window.get(b"scene", default=0)
            if address:
                shown.add(int(address))
            window = window.get_pointer(b"next")
    return shown


def _name(scene: BlendFileBlock) -> str:
    raw = scene.get((b"id", b"name"), as_str=False)
    name = bytes(raw)[2:] if isinstance(raw, bytes) else b""
    return name.decode("utf-8", "replace")
