"""The live preview: which frame it shows, how chunks land on its small canvas, and the route."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from apphelpers import ADMIN, NODE, PROBE, InProcessFarm
from blendfarm.exr import write_exr
from blendfarm.pngio import write_png
from blendfarm.server.preview import (
    FrameProgress,
    as_rgba8,
    canvas_rect,
    current_frame,
    paste_scaled,
    preview_size,
)
from blendfarm.tiles import Rect, chunk_rect

# -- which frame ------------------------------------------------------------------------------


def fp(frame: int, total: int, done: int, rendering: int = 0, last: float = 0.0) -> FrameProgress:
    return FrameProgress(frame, total, done, rendering, last)


def test_nothing_started_has_no_current_frame() -> None:
    assert current_frame([]) is None
    assert current_frame([fp(1, 4, 0), fp(2, 4, 0)]) is None


def test_the_growing_frame_worked_on_last_is_current() -> None:
    frames = [fp(1, 4, 4, last=10), fp(9, 4, 2, 1, last=30), fp(5, 4, 1, 0, last=20)]
    assert current_frame(frames) == 9


def test_a_finished_frame_beats_one_whose_first_chunk_only_renders() -> None:
    # a 1x1 animation shows its newest frame, not a blank canvas between frames
    frames = [fp(1, 1, 1, last=10), fp(2, 1, 1, last=20), fp(3, 1, 0, 1, last=30)]
    assert current_frame(frames) == 2


def test_a_frame_that_only_renders_is_shown_when_nothing_is_in() -> None:
    assert current_frame([fp(1, 4, 0), fp(7, 4, 0, 2, last=5)]) == 7


# -- the canvas -------------------------------------------------------------------------------


def test_a_preview_is_never_larger_than_1024_or_the_frame() -> None:
    assert preview_size(31, 23) == (31, 23)
    assert preview_size(16384, 8192) == (1024, 512)
    assert preview_size(300, 5000) == (61, 1024)
    assert preview_size(100000, 3) == (1024, 1)


@given(
    st.integers(1, 20000),
    st.integers(1, 20000),
    st.integers(1, 12),
    st.integers(16, 1024),
)
def test_chunks_tile_the_canvas_without_gaps_or_overlaps(w: int, h: int, n: int, lim: int) -> None:
    n = min(n, w, h)
    cw, ch = preview_size(w, h, lim)
    cover = np.zeros((ch, cw), dtype=np.int32)
    for r in range(n):
        for c in range(n):
            box = canvas_rect(chunk_rect(w, h, n, r, c), w, h, cw, ch)
            assert 0 <= box.x0 <= box.x1 <= cw and 0 <= box.y0 <= box.y1 <= ch
            cover[box.y0 : box.y1, box.x0 : box.x1] += 1
    assert (cover == 1).all()


def test_a_chunk_is_scaled_into_its_box_only() -> None:
    canvas = np.zeros((10, 20, 4), dtype=np.uint8)
    chunk = np.zeros((50, 40, 4), dtype=np.uint8)
    chunk[..., 0], chunk[..., 3] = 200, 255
    paste_scaled(canvas, chunk, Rect(5, 2, 9, 7))
    assert (canvas[2:7, 5:9] == [200, 0, 0, 255]).all()
    canvas[2:7, 5:9] = 0
    assert not canvas.any()


def test_grey_16_bit_and_alpha_chunks_become_8_bit_rgba() -> None:
    grey16 = np.full((2, 3, 1), 65535, dtype=np.uint16)
    assert (as_rgba8(grey16) == [255, 255, 255, 255]).all()
    grey_alpha = np.dstack([np.full((2, 2), 10, np.uint8), np.full((2, 2), 20, np.uint8)])
    assert (as_rgba8(grey_alpha) == [10, 10, 10, 20]).all()
    rgb = np.full((1, 1, 3), 7, dtype=np.uint8)
    assert as_rgba8(rgb).tolist() == [[[7, 7, 7, 255]]]


# -- the route --------------------------------------------------------------------------------


def solid_png(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    img = np.zeros((h, w, 4), dtype=np.uint8)
    img[..., :3], img[..., 3] = rgb, 255
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.png"
        write_png(path, img)
        return path.read_bytes()


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def land(farm: InProcessFarm, task: dict[str, Any], rgb: tuple[int, int, int]) -> None:
    rect = task["rect"]
    resp = farm.client.put(
        f"/api/tasks/{task['id']}/result",
        params={"lease": task["lease"]},
        headers=NODE,
        content=solid_png(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"], rgb),
    )
    assert resp.status_code == 200 and resp.json()["accepted"], resp.text


def started(
    farm: InProcessFarm, fields: dict[str, str], probe: dict[str, Any] | None = None
) -> str:
    """A submitted project whose probe is in: its chunks wait for nodes."""
    pid = str(farm.submit(fields).json()["id"])
    task = farm.lease()
    assert task is not None and task["kind"] == "probe"
    assert farm.answer(task, probe).status_code == 200
    return pid


def image(resp: Any) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(resp.content)) as pil:
        assert pil.mode == "RGBA"
        return np.array(pil)


def assert_error(resp: Any, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    return str(body["error"]["message"])


def test_a_partial_still_shows_the_chunks_in_at_their_places(farm: InProcessFarm) -> None:
    pid = started(farm, {"frame": "1", "tiles": "2"})
    url = f"/api/projects/{pid}/preview"
    empty = farm.client.get(url)
    assert not image(empty).any()  # nothing in: all transparent
    assert empty.headers["x-preview-chunks"] == "0/4" and empty.headers["x-preview-frame"] == "1"
    first = farm.lease()
    assert first is not None and (first["row"], first["col"]) == (0, 0)
    land(farm, first, COLOURS[0])
    resp = farm.client.get(url)
    got = image(resp)
    assert got.shape == (23, 31, 4) and resp.headers["x-preview-chunks"] == "1/4"
    top_left = chunk_rect(31, 23, 2, 0, 0)
    assert (got[top_left.y0 : top_left.y1, top_left.x0 : top_left.x1] == [255, 0, 0, 255]).all()
    got[top_left.y0 : top_left.y1, top_left.x0 : top_left.x1] = 0
    assert not got.any()  # the rest is still transparent
    assert resp.headers["cache-control"] == "no-cache"


def test_the_etag_changes_when_a_chunk_lands_and_only_then(farm: InProcessFarm) -> None:
    pid = started(farm, {"frame": "1", "tiles": "2"})
    url = f"/api/projects/{pid}/preview"
    land(farm, farm.lease(), COLOURS[0])  # type: ignore[arg-type]
    one = farm.client.get(url)
    tag = one.headers["etag"]
    cached = farm.settings.data / "projects" / pid / "preview" / "1.png"
    stamp = cached.stat().st_mtime_ns
    again = farm.client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag and not again.content
    assert farm.client.get(url).content == one.content and cached.stat().st_mtime_ns == stamp
    second = farm.lease()
    assert second is not None
    land(farm, second, COLOURS[1])
    two = farm.client.get(url, headers={"If-None-Match": tag})
    assert two.status_code == 200 and two.headers["etag"] != tag
    assert two.headers["x-preview-chunks"] == "2/4"
    rect = chunk_rect(31, 23, 2, second["row"], second["col"])
    assert (image(two)[rect.y0 : rect.y1, rect.x0 : rect.x1] == [0, 255, 0, 255]).all()


def test_a_big_frame_is_scaled_down_chunk_by_chunk(farm: InProcessFarm) -> None:
    probe = {**PROBE, "resolution_x": 2100, "resolution_y": 300}
    pid = started(farm, {"frame": "1", "tiles": "2"}, probe)
    for rgb in COLOURS:
        land(farm, farm.lease(), rgb)  # type: ignore[arg-type]
    got = image(farm.client.get(f"/api/projects/{pid}/preview"))
    assert got.shape == (146, 1024, 4)
    for (r, c), rgb in zip([(0, 0), (0, 1), (1, 0), (1, 1)], COLOURS, strict=True):
        box = canvas_rect(chunk_rect(2100, 300, 2, r, c), 2100, 300, 1024, 146)
        assert (got[box.y0 : box.y1, box.x0 : box.x1] == [*rgb, 255]).all(), (r, c)


def test_exr_and_raw_multilayer_chunks_are_tone_mapped(farm: InProcessFarm) -> None:
    pid = started(farm, {"frame": "1", "tiles": "2"})
    chunks = farm.settings.data / "projects" / pid / "chunks"
    a, b = chunk_rect(31, 23, 2, 0, 0), chunk_rect(31, 23, 2, 1, 1)

    def plane(rect: Rect, value: float, dtype: Any = np.float32) -> np.ndarray:
        return np.full((rect.height, rect.width), value, dtype=dtype)

    # a plain half-float EXR chunk (the direct path of an OpenEXR scene)
    write_exr(
        chunks / "1-0-0.exr",
        [("", {c: plane(a, 0.5, np.float16) for c in "RGB"} | {"A": plane(a, 1.0)}, {})],
    )
    # a raw chunk: multipart, the Combined pass among others (Blender 5's multilayer layout)
    values = zip("RGBA", (1, 0.2, 0, 1), strict=True)
    combined = {f"ViewLayer.Combined.{c}": plane(b, v) for c, v in values}
    albedo = {f"ViewLayer.Denoising Albedo.{c}": plane(b, 0.9) for c in "RGB"}
    write_exr(
        chunks / "1-1-1.exr",
        [("ViewLayer.Combined", combined, {}), ("ViewLayer.Denoising Albedo", albedo, {})],
        compression=OpenEXR.ZIP_COMPRESSION,
    )
    resp = farm.client.get(f"/api/projects/{pid}/preview")
    got = image(resp)
    assert resp.headers["x-preview-chunks"] == "2/4"
    assert (got[a.y0 : a.y1, a.x0 : a.x1] == [188, 188, 188, 255]).all()  # 0.5 linear in sRGB
    assert (got[b.y0 : b.y1, b.x0 : b.x1] == [255, 124, 0, 255]).all()


def test_a_damaged_chunk_is_left_out(farm: InProcessFarm) -> None:
    pid = started(farm, {"frame": "1", "tiles": "2"})
    land(farm, farm.lease(), COLOURS[0])  # type: ignore[arg-type]
    chunks = farm.settings.data / "projects" / pid / "chunks"
    (chunks / "1-0-1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (chunks / "1-9-9.png").write_bytes(b"outside the grid")
    got = image(farm.client.get(f"/api/projects/{pid}/preview"))
    rect = chunk_rect(31, 23, 2, 0, 1)
    assert not got[rect.y0 : rect.y1, rect.x0 : rect.x1].any()
    assert got[0, 0].tolist() == [255, 0, 0, 255]


def test_an_animation_shows_its_current_frame_or_the_one_asked(farm: InProcessFarm) -> None:
    pid = started(farm, {"frames": "1-2", "tiles": "2"})
    url = f"/api/projects/{pid}/preview"
    tasks = [farm.lease() for _ in range(8)]
    by_frame = {f: [t for t in tasks if t and t["frame"] == f] for f in (1, 2)}
    for t in by_frame[1]:
        land(farm, t, COLOURS[0])
    assert farm.client.get(url).headers["x-preview-frame"] == "1"  # frame 2 only renders
    land(farm, by_frame[2][0], COLOURS[2])
    resp = farm.client.get(url)
    assert resp.headers["x-preview-frame"] == "2" and resp.headers["x-preview-chunks"] == "1/4"
    asked = farm.client.get(url, params={"frame": "1"})
    assert asked.headers["x-preview-frame"] == "1" and asked.headers["x-preview-chunks"] == "4/4"
    assert (image(asked) == [255, 0, 0, 255]).all()


def test_missing_projects_and_bad_frames_are_clear_errors(farm: InProcessFarm) -> None:
    assert_error(farm.client.get("/api/projects/nope1234/preview"), 404)
    assert_error(farm.client.get("/api/projects/../preview"), 404)
    pid = str(farm.submit({"frame": "1"}).json()["id"])
    assert "scene" in assert_error(farm.client.get(f"/api/projects/{pid}/preview"), 404)
    farm.answer(farm.lease())  # type: ignore[arg-type]
    url = f"/api/projects/{pid}/preview"
    assert "whole number" in assert_error(farm.client.get(url, params={"frame": "x"}), 400)
    assert "not rendered" in assert_error(farm.client.get(url, params={"frame": "2"}), 400)
    assert farm.client.get(url, params={"frame": "1"}).status_code == 200


def test_16_bit_chunks_are_shown_in_8_bit(farm: InProcessFarm) -> None:
    pid = started(farm, {"frame": "1", "tiles": "2"})
    chunks = farm.settings.data / "projects" / pid / "chunks"
    a, b = chunk_rect(31, 23, 2, 0, 0), chunk_rect(31, 23, 2, 0, 1)
    rgba = np.zeros((a.height, a.width, 4), dtype=np.uint16)
    rgba[..., 0], rgba[..., 3] = 257 * 100, 65535
    write_png(chunks / "1-0-0.png", rgba)
    write_png(chunks / "1-0-1.png", np.full((b.height, b.width, 1), 257 * 30, dtype=np.uint16))
    got = image(farm.client.get(f"/api/projects/{pid}/preview"))
    assert (got[a.y0 : a.y1, a.x0 : a.x1] == [100, 0, 0, 255]).all()
    assert (got[b.y0 : b.y1, b.x0 : b.x1] == [30, 30, 30, 255]).all()


def test_a_preview_of_a_deleted_project_leaves_nothing_behind(farm: InProcessFarm) -> None:
    pid = started(farm, {"frame": "1", "tiles": "2"})
    land(farm, farm.lease(), COLOURS[0])  # type: ignore[arg-type]
    previews = farm.farm.previews
    plan = previews._plan(pid, None)
    folder = farm.settings.data / "projects" / pid
    assert farm.client.delete(f"/api/projects/{pid}", headers=ADMIN).status_code == 200
    # a preview being built while its project is deleted answers, but keeps nothing
    png, note = folder / "preview" / "1.png", folder / "preview" / "1.json"
    assert previews._build(plan, png, note, {}).startswith(b"\x89PNG")
    assert not folder.exists()
    assert_error(farm.client.get(f"/api/projects/{pid}/preview"), 404)
