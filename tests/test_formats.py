"""The scene's output format and what follows from it: chunk kinds, extensions (pure)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blendfarm.errors import BadInput
from blendfarm.formats import (
    CHUNK_KINDS,
    FINISH_MODES,
    OutputFormat,
    chunk_file_name,
    chunk_kind,
    frame_extension,
    kind_of_chunk_file,
    media_type,
    output_format,
)
from blendfarm.protocol import Probe, decode

PNG8 = OutputFormat()
PNG16 = OutputFormat(color_depth="16")
JPEG = OutputFormat(file_format="JPEG", color_mode="RGB")
TIFF16 = OutputFormat(file_format="TIFF", color_depth="16")
EXR_HALF = OutputFormat(file_format="OPEN_EXR", color_depth="16")
MULTILAYER = OutputFormat(
    file_format="OPEN_EXR_MULTILAYER", color_depth="32", media_type="MULTI_LAYER_IMAGE"
)


@pytest.mark.parametrize(
    ("tiles", "finish", "denoises", "composites", "output", "kind"),
    [
        (1, "auto", True, True, PNG8, "png"),  # 1x1: Blender denoises and composites itself
        (1, "always", False, False, EXR_HALF, "exr"),
        (2, "auto", False, False, PNG16, "png"),
        (2, "auto", False, False, MULTILAYER, "exr"),
        (2, "auto", True, False, PNG8, "raw"),
        (2, "auto", False, True, EXR_HALF, "raw"),
        (3, "always", False, False, JPEG, "raw"),
        (3, "never", True, True, JPEG, "png"),
        (3, "never", True, True, MULTILAYER, "exr"),
    ],
)
def test_the_chunk_kind_follows_the_contract(tiles, finish, denoises, composites, output, kind):
    assert chunk_kind(tiles, finish, denoises, composites, output) == kind


FORMATS = st.builds(
    OutputFormat,
    file_format=st.sampled_from(
        ["PNG", "JPEG", "TIFF", "OPEN_EXR", "OPEN_EXR_MULTILAYER", "BMP", "WEBP", "FFMPEG", "HDR"]
    ),
    color_depth=st.sampled_from(["8", "10", "12", "16", "32"]),
    color_mode=st.sampled_from(["BW", "RGB", "RGBA"]),
    quality=st.integers(0, 100),
)


@given(
    tiles=st.integers(1, 16),
    finish=st.sampled_from(FINISH_MODES),
    denoises=st.booleans(),
    composites=st.booleans(),
    output=FORMATS,
)
def test_only_tiled_frames_that_need_it_render_raw(tiles, finish, denoises, composites, output):
    kind = chunk_kind(tiles, finish, denoises, composites, output)
    needs = finish == "always" or (finish == "auto" and (denoises or composites))
    assert (kind == "raw") == (tiles > 1 and needs)
    if kind != "raw":
        assert (kind == "exr") == output.is_exr
    assert frame_extension(kind, output) in ("png", "jpg", "tif", "exr")


@pytest.mark.parametrize(
    ("output", "extension", "deep", "half", "words"),
    [
        (PNG8, "png", False, False, "PNG 8-bit"),
        (PNG16, "png", True, False, "PNG 16-bit"),
        (JPEG, "jpg", False, False, "JPEG (quality 90)"),
        (TIFF16, "tif", True, False, "TIFF 16-bit"),
        (OutputFormat(file_format="TIFF"), "tif", False, False, "TIFF 8-bit"),
        (EXR_HALF, "exr", False, True, "OpenEXR half"),
        (OutputFormat(file_format="OPEN_EXR"), "exr", False, False, "OpenEXR float"),
        (MULTILAYER, "exr", False, False, "multilayer OpenEXR float"),
        (OutputFormat(file_format="BMP"), "png", False, False, "PNG 8-bit"),
        (OutputFormat(file_format="DPX", color_depth="12"), "png", True, False, "PNG 16-bit"),
        (OutputFormat(file_format="FFMPEG", media_type="VIDEO"), "png", False, False, "PNG 8-bit"),
    ],
)  # fmt: skip
def test_each_format_has_its_extension_and_depth(output, extension, deep, half, words):
    assert (output.extension, output.deep, output.half, output.describe()) == (
        extension,
        deep,
        half,
        words,
    )


def test_a_stitched_exr_keeps_a_lossless_codec_and_replaces_a_lossy_one():
    assert OutputFormat(file_format="OPEN_EXR", exr_codec="PIZ").lossless_exr_codec == "PIZ"
    assert OutputFormat(file_format="OPEN_EXR", exr_codec="DWAA").lossless_exr_codec == "ZIP"


def test_png_chunks_of_an_exr_scene_make_a_png_frame():
    assert frame_extension("png", EXR_HALF) == "png"
    assert frame_extension("exr", EXR_HALF) == "exr"
    assert frame_extension("png", JPEG) == "jpg"
    assert frame_extension("raw", TIFF16) == "tif"  # the finish task writes the scene's format


@given(stem=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20))
def test_a_chunk_file_name_says_its_kind(stem):
    for kind in CHUNK_KINDS:
        assert kind_of_chunk_file(chunk_file_name(stem, kind)) == kind


def test_a_file_of_no_chunk_kind_is_refused():
    with pytest.raises(ValueError):
        kind_of_chunk_file("chunk.jpg")


def test_stored_settings_that_make_no_sense_read_as_png():
    assert output_format(None) == PNG8
    assert output_format({"file_format": 3}) == PNG8
    assert output_format({"quality": 1000, "file_format": "JPEG"}) == PNG8
    assert output_format({"file_format": "JPEG", "unknown": 1}).family == "jpeg"
    assert output_format(EXR_HALF.to_dict()) == EXR_HALF


def test_a_probe_with_an_impossible_output_format_is_bad_input():
    base = b'"resolution_x":1,"resolution_y":1,"resolution_percentage":100,"frame_start":1,'
    base += b'"frame_end":1,"fps":24,"fps_base":1'
    ok = decode(b"{" + base + b',"output":{"file_format":"TIFF","color_depth":"16"}}', Probe)
    assert ok.output == TIFF16
    with pytest.raises(BadInput):
        decode(b"{" + base + b',"output":{"quality":101}}', Probe)
    with pytest.raises(BadInput):
        decode(b"{" + base + b',"output":{"file_format":"' + b"X" * 500 + b'"}}', Probe)
    assert msgspec.json.decode(b"{" + base + b"}", type=Probe).output is None


def test_files_have_their_media_type():
    assert media_type("result.exr") == "image/x-exr"
    assert media_type("result.jpg") == "image/jpeg"
    assert media_type("result.tif") == "image/tiff"
    assert media_type("result.mp4") == "video/mp4"
    assert media_type("result") == "application/octet-stream"
