"""The scene's output format, and what that makes of chunks, frames and results (pure).

`OutputFormat` is what the probe reads from Blender's image settings
(`scene.render.image_settings`); the server keeps it with the project. From it follow:

- the kind of file a node renders a chunk as (`chunk_kind`): `png` (8 or 16-bit, the view
  transform applied by Blender), `exr` (the scene's OpenEXR, half or float, every pass of a
  multilayer file kept: linear scene data) or `raw` (a multilayer float EXR without denoising
  or compositing, finished once per frame by a finish task);
- the format of a final frame and of a still's result: the scene's own when the farm makes it
  (PNG 8/16, JPEG, TIFF 8/16, OpenEXR half/float, multilayer OpenEXR), else PNG;
- file names: a chunk file says its kind (`<stem>.png`, `<stem>.exr`, `<stem>.raw.exr`).

Only the standard library is used: Blender's own Python loads this file too (by its path,
next to node/blender_output.py), so the node decides a chunk's kind with the same rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ChunkKind = Literal["png", "exr", "raw"]
CHUNK_KINDS: tuple[ChunkKind, ...] = ("png", "exr", "raw")
FinishMode = Literal["never", "auto", "always"]
FINISH_MODES: tuple[FinishMode, ...] = ("never", "auto", "always")
Family = Literal["png", "jpeg", "tiff", "exr", "multilayer"]

# A chunk file's name ends in its kind's extension: the node and the server's data dir agree.
CHUNK_EXTENSIONS: dict[ChunkKind, str] = {"png": "png", "exr": "exr", "raw": "raw.exr"}

_FAMILIES: dict[str, Family] = {
    "PNG": "png",
    "JPEG": "jpeg",
    "TIFF": "tiff",
    "OPEN_EXR": "exr",
    "OPEN_EXR_MULTILAYER": "multilayer",
}
_EXTENSIONS: dict[Family, str] = {
    "png": "png",
    "jpeg": "jpg",
    "tiff": "tif",
    "exr": "exr",
    "multilayer": "exr",
}
MEDIA_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "tif": "image/tiff",
    "exr": "image/x-exr",
    "mp4": "video/mp4",
}
FRAME_EXTENSIONS = ("png", "jpg", "tif", "exr")
COLOR_MODES = ("BW", "RGB", "RGBA")
DEEP = ("16", "32")  # Blender's color_depth values that make a display format 16-bit
LOSSLESS_EXR_CODECS = ("NONE", "ZIP", "ZIPS", "PIZ", "RLE")
_LONGEST = 40  # no Blender enum value is longer; a longer one is not a setting


@dataclass(frozen=True)
class OutputFormat:
    """Blender's image settings as the probe reads them (its enum values, unchanged)."""

    file_format: str = "PNG"
    color_depth: str = "8"
    color_mode: str = "RGBA"
    quality: int = 90
    exr_codec: str = "ZIP"
    media_type: str = "IMAGE"

    def __post_init__(self) -> None:
        for name in ("file_format", "color_depth", "color_mode", "exr_codec", "media_type"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > _LONGEST:
                raise ValueError(f"{name} is not one of Blender's image settings")
        if not isinstance(self.quality, int) or not 0 <= self.quality <= 100:
            raise ValueError("quality must be 0-100")

    @property
    def family(self) -> Family:
        """The format the farm writes frames in: the scene's, or PNG for one it does not
        make (BMP, WebP, a movie...)."""
        return _FAMILIES.get(self.file_format, "png")

    @property
    def supported(self) -> bool:
        """Whether the farm's frames are in exactly this format (else PNG stands in)."""
        return self.file_format in _FAMILIES

    @property
    def extension(self) -> str:
        """The extension of a final frame and of a still's result: png, jpg, tif or exr."""
        return _EXTENSIONS[self.family]

    @property
    def is_exr(self) -> bool:
        return self.family in ("exr", "multilayer")

    @property
    def deep(self) -> bool:
        """A 16-bit display format (PNG 16, TIFF 16; a format the farm replaces by PNG is
        16-bit when the scene's depth is more than 8)."""
        if self.family in ("png", "tiff"):
            return self.color_depth in DEEP or (
                not self.supported and self.color_depth not in ("", "8")
            )
        return False

    @property
    def half(self) -> bool:
        """An OpenEXR of half floats (16-bit) rather than 32-bit floats."""
        return self.is_exr and self.color_depth == "16"

    @property
    def png_mode(self) -> str:
        """The colour mode of a PNG chunk: the scene's (BW, RGB or RGBA), else RGBA."""
        return self.color_mode if self.color_mode in COLOR_MODES else "RGBA"

    @property
    def lossless_exr_codec(self) -> str:
        """The EXR codec a stitched frame is written with: the scene's when lossless (its
        pixels stay exactly what Blender rendered), else ZIP."""
        return self.exr_codec if self.exr_codec in LOSSLESS_EXR_CODECS else "ZIP"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """In words, e.g. "OpenEXR half", "PNG 16-bit", "JPEG (quality 90)"."""
        family = self.family
        if family == "multilayer":
            return "multilayer OpenEXR " + ("half" if self.half else "float")
        if family == "exr":
            return "OpenEXR " + ("half" if self.half else "float")
        if family == "jpeg":
            return f"JPEG (quality {self.quality})"
        name = "TIFF" if family == "tiff" else "PNG"
        return f"{name} {'16' if self.deep else '8'}-bit"


def output_format(settings: Any) -> OutputFormat:
    """The output format from a mapping of its fields (a stored or sent one); missing or
    unusable values are the defaults (PNG 8-bit RGBA)."""
    if isinstance(settings, OutputFormat):
        return settings
    if not isinstance(settings, dict):
        return OutputFormat()
    known = {k: settings[k] for k in OutputFormat.__dataclass_fields__ if k in settings}
    try:
        return OutputFormat(**known)
    except (TypeError, ValueError):
        return OutputFormat()


def chunk_kind(
    tiles: int, finish: str, denoises: bool, composites: bool, output: OutputFormat
) -> ChunkKind:
    """What a node renders a chunk as.

    raw: a tiled frame (tiles > 1) finished once by a finish task, when asked ("always") or
    when it needs it ("auto": the scene denoises with Cycles or uses the compositor, whose
    effects would stop at chunk edges). exr: the direct path for an OpenEXR output. png: the
    direct path otherwise (16-bit when the scene's format is). A 1x1 frame always renders
    direct: Blender denoises and composites the whole frame itself.
    """
    if tiles > 1 and (finish == "always" or (finish == "auto" and (denoises or composites))):
        return "raw"
    return "exr" if output.is_exr else "png"


def chunk_file_name(stem: str, kind: ChunkKind) -> str:
    """The file a chunk of `kind` is written to: `<stem>.png`, `<stem>.exr`, `<stem>.raw.exr`."""
    return f"{stem}.{CHUNK_EXTENSIONS[kind]}"


def kind_of_chunk_file(name: str) -> ChunkKind:
    """The kind a chunk file's name says (see `chunk_file_name`); ValueError for another."""
    for kind in ("raw", "exr", "png"):  # raw first: its extension ends like an exr's
        if name.endswith("." + CHUNK_EXTENSIONS[kind]):
            return kind
    raise ValueError(f"{name} is not a chunk file")


def frame_extension(kind: ChunkKind, output: OutputFormat) -> str:
    """The extension of the frame stitched from chunks of `kind`: the scene's format, but PNG
    for PNG chunks of an EXR scene (sent by a node that renders only PNG)."""
    if kind == "png" and output.is_exr:
        return "png"
    return output.extension


def media_type(name: str) -> str:
    """The media type of a frame or result file by its extension."""
    return MEDIA_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
