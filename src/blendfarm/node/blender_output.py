"""Runs inside Blender, loaded by blender_script.py from its own folder: how a chunk is written.

A render session keeps one scene loaded for many chunks, and a chunk changes the scene's
output settings (a PNG chunk of a JPEG scene, a raw chunk without denoising...). So the
scene's own settings are read once, before any chunk changes them (`Saved`), and every chunk
starts from them again: `prepare` puts them back, decides the chunk's kind with the farm's
rules (formats.chunk_kind, the same file the server uses) and sets what that kind needs.

- png: Blender's PNG, 8 or 16-bit as the scene's format is, in the scene's colour mode; the
  view transform and look are applied by Blender when it saves (a display format).
- exr: the scene's own OpenEXR settings, untouched: half or float, one layer or every pass,
  linear scene data.
- raw: a multilayer float EXR rendered without denoising and compositing, with the denoising
  data passes stored, for a finish task to denoise and composite the whole frame once.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import bpy

# Blender's image settings a chunk may change, in the order they are set back (the media
# type before the file format, the format before its depth and colour mode).
IMAGE_FIELDS = (
    "media_type",
    "file_format",
    "color_mode",
    "color_depth",
    "quality",
    "compression",
    "exr_codec",
    "tiff_codec",
)


def _load(name: str, path: str) -> Any:
    """A module of the farm's by its file's path (Blender's Python has no blendfarm)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


FORMATS = _load(
    "blendfarm_formats",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "formats.py"),
)


class Saved:
    """A scene's own output, denoising and compositing settings, as the file had them."""

    def __init__(self, scene: Any):
        fmt = scene.render.image_settings
        self.image = [(name, getattr(fmt, name)) for name in IMAGE_FIELDS if hasattr(fmt, name)]
        self.use_compositing = scene.render.use_compositing
        cycles = getattr(scene, "cycles", None)
        self.use_denoising = bool(cycles and cycles.use_denoising)
        self.store_passes = [
            (layer, layer.cycles.denoising_store_passes)
            for layer in scene.view_layers
            if hasattr(getattr(layer, "cycles", None), "denoising_store_passes")
        ]

    def restore(self, scene: Any) -> None:
        fmt = scene.render.image_settings
        for name, value in self.image:
            if getattr(fmt, name) != value:
                setattr(fmt, name, value)
        scene.render.use_compositing = self.use_compositing
        cycles = getattr(scene, "cycles", None)
        if cycles is not None:
            cycles.use_denoising = self.use_denoising
        for layer, value in self.store_passes:
            layer.cycles.denoising_store_passes = value

    def output(self) -> Any:
        """The scene's output format (a formats.OutputFormat)."""
        values = dict(self.image)
        return FORMATS.output_format(
            {
                "file_format": str(values.get("file_format", "PNG")),
                "color_depth": str(values.get("color_depth", "8")),
                "color_mode": str(values.get("color_mode", "RGBA")),
                "quality": int(values.get("quality", 90)),
                "exr_codec": str(values.get("exr_codec", "ZIP")),
                "media_type": str(values.get("media_type", "IMAGE")),
            }
        )


_SAVED: dict[int, Saved] = {}


def saved(scene: Any) -> Saved:
    """The scene's own settings, read the first time a session asks (before any change)."""
    key = scene.as_pointer()
    if key not in _SAVED:
        _SAVED[key] = Saved(scene)
    return _SAVED[key]


def scene_output(scene: Any) -> dict[str, Any]:
    """The scene's output format for the probe."""
    result: dict[str, Any] = saved(scene).output().to_dict()
    return result


def denoises(scene: Any) -> bool:
    cycles = getattr(scene, "cycles", None)
    return bool(cycles and scene.render.engine == "CYCLES" and cycles.use_denoising)


def prepare(scene: Any, command: dict[str, Any], uses_compositor: Callable[[Any], bool]) -> str:
    """Set the scene up for one chunk from its own settings; the chunk's kind (png, exr or
    raw). `uses_compositor(scene)`: whether the scene, as restored, uses the compositor."""
    own = saved(scene)
    own.restore(scene)
    output = own.output()
    kind: str = FORMATS.chunk_kind(
        int(command.get("tiles") or 1),
        str(command.get("finish") or "never"),
        denoises(scene),
        uses_compositor(scene),
        output,
    )
    fmt = scene.render.image_settings
    if kind == "png":
        if hasattr(fmt, "media_type"):  # Blender 5.0 on: a movie output must become an image
            fmt.media_type = "IMAGE"
        # A TIFF scene's chunk is Blender's own TIFF (its float to 16-bit conversion is not
        # PNG's), sent as the PNG it converts to without loss (node/chunks.py).
        fmt.file_format = "TIFF" if output.family == "tiff" else "PNG"
        fmt.color_mode = output.png_mode
        fmt.color_depth = "16" if output.deep else "8"
        if output.family == "tiff":
            fmt.tiff_codec = "NONE"
        else:
            fmt.compression = 15
    elif kind == "raw":
        raw_settings(scene)
    # exr: the scene's own OpenEXR settings, as restored
    return kind


def raw_settings(scene: Any) -> None:
    """A raw chunk (issue 12's finish tasks): no denoising, no compositing, the denoising
    data stored, every pass of the view layer in a multilayer float EXR."""
    scene.render.use_compositing = False
    cycles = getattr(scene, "cycles", None)
    if cycles is not None and scene.render.engine == "CYCLES":
        cycles.use_denoising = False
        for layer in scene.view_layers:
            if hasattr(getattr(layer, "cycles", None), "denoising_store_passes"):
                layer.cycles.denoising_store_passes = True
    fmt = scene.render.image_settings
    if hasattr(fmt, "media_type"):
        fmt.media_type = "MULTI_LAYER_IMAGE"
    fmt.file_format = "OPEN_EXR_MULTILAYER"
    fmt.color_depth = "32"
    fmt.exr_codec = "ZIP"


def chunk_path(scene: Any, output: str, kind: str) -> str:
    """Where a chunk of `kind` is written: the node names the PNG; another kind goes next to
    it under its own extension (`<id>.exr`, `<id>.raw.exr`), a TIFF scene's `<id>.tif`."""
    stem = output[: -len(".png")] if output.endswith(".png") else output
    if kind == "png" and scene.render.image_settings.file_format == "TIFF":
        return stem + ".tif"
    return str(stem + "." + FORMATS.CHUNK_EXTENSIONS[kind])


def save(scene: Any, output: str) -> None:
    """Write the render result as the scene's output settings now say (a display format
    through the view transform and look, OpenEXR as linear data, every pass of a multilayer
    file)."""
    bpy.data.images["Render Result"].save_render(filepath=output, scene=scene)
