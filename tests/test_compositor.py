from __future__ import annotations

import zipfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from apphelpers import PROBE, InProcessFarm
from blendfarm.compositor import (
    chunk_name,
    encode_mp4,
    stitch,
    stitch_files,
    video_frame,
    write_raw_zip,
    write_thumbnail,
)
from blendfarm.pngio import NotAPng, png_header, read_png, write_png
from blendfarm.server import compositing
from blendfarm.tiles import all_chunks, chunk_rect


def test_sixteen_bit_rgba_survives_a_png_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65536, size=(31, 47, 4), dtype=np.uint16)
    write_png(tmp_path / "a.png", image)
    assert png_header(tmp_path / "a.png")[:3] == (47, 31, 16)
    back = read_png(tmp_path / "a.png")
    assert back.dtype == np.uint16 and np.array_equal(back, image)


def test_stitching_chunk_files_rebuilds_the_frame_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    w, h, n = 53, 41, 3
    frame = rng.integers(0, 65536, size=(h, w, 4), dtype=np.uint16)
    parts = []
    for r, c in all_chunks(n):
        rect = chunk_rect(w, h, n, r, c)
        path = tmp_path / f"{r}-{c}.png"
        write_png(path, frame[rect.y0 : rect.y1, rect.x0 : rect.x1])
        parts.append((rect, path))
    stitch_files(parts, w, h, tmp_path / "frame.png")
    assert np.array_equal(read_png(tmp_path / "frame.png"), frame)


def test_alpha_is_pasted_not_blended() -> None:
    half = np.full((2, 2, 4), 128, dtype=np.uint8)
    out = stitch([(chunk_rect(4, 4, 2, r, c), half) for r, c in all_chunks(2)], 4, 4)
    assert (out[:, :, 3] == 128).all()


def test_a_chunk_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        stitch([(chunk_rect(10, 10, 2, 0, 0), np.zeros((4, 5, 3), np.uint8))], 10, 10)


def test_not_a_png_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"GIF89a" + b"\0" * 40)
    with pytest.raises(NotAPng):
        read_png(tmp_path / "x.png")


def test_video_frames_are_even_rgb_with_alpha_over_black() -> None:
    img = np.zeros((3, 5, 4), dtype=np.uint16)
    img[:, :, 0] = 65535
    img[:, :, 3] = 65535
    img[0, 0, 3] = 0
    frame = video_frame(img)
    assert frame.shape == (4, 6, 3) and frame.dtype == np.uint8
    assert frame[1, 1, 0] == 255 and frame[0, 0, 0] == 0


def test_mp4_has_every_frame_in_order_at_fps_over_fps_base(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        img = np.zeros((15, 21, 3), dtype=np.uint8)
        img[:, : 4 * (i + 1)] = 255  # a white bar that grows: frame order is visible
        paths.append(tmp_path / f"{i}.png")
        write_png(paths[-1], img)
    out = tmp_path / "a.mp4"
    encode_mp4(paths, out, fps=30, fps_base=1.001)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(16, 22, 3) for f in reader]
    assert meta["fps"] == pytest.approx(29.97, abs=0.01)
    assert meta["size"] == (22, 16)
    assert len(frames) == 5
    widths = [int((f[8, :, 0] > 128).sum()) for f in frames]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert not list(tmp_path.glob(".*tmp*"))


def test_raw_zip_uses_the_seed_names(tmp_path: Path) -> None:
    assert chunk_name("ab12", 7, 0, 2) == "ab12-7-0-2.png"
    src = tmp_path / "c.png"
    write_png(src, np.zeros((2, 2, 3), np.uint8))
    write_raw_zip(
        [(chunk_name("ab12", 1, r, c), src) for r, c in all_chunks(2)], tmp_path / "raw.zip"
    )
    with zipfile.ZipFile(tmp_path / "raw.zip") as zf:
        assert sorted(zf.namelist()) == [
            "ab12-1-0-0.png",
            "ab12-1-0-1.png",
            "ab12-1-1-0.png",
            "ab12-1-1-1.png",
        ]


def test_thumbnail_is_small(tmp_path: Path) -> None:
    write_png(tmp_path / "f.png", np.zeros((300, 1000, 4), np.uint16))
    write_thumbnail(tmp_path / "f.png", tmp_path / "t.png")
    w, h, depth, _ = png_header(tmp_path / "t.png")
    assert (w, h, depth) == (320, 96, 8)


@pytest.mark.parametrize(
    ("width", "height", "tiles", "planes", "deep"),
    [(37, 23, 3, 4, False), (64, 48, 2, 3, True), (10, 10, 1, 4, True), (29, 31, 5, 2, False)],
)
def test_the_streamed_stitch_equals_the_whole_frame_paste(
    tmp_path: Path, width: int, height: int, tiles: int, planes: int, deep: bool
) -> None:
    rng = np.random.default_rng(width * height)
    dtype = np.uint16 if deep else np.uint8
    frame = rng.integers(0, np.iinfo(dtype).max, size=(height, width, planes), dtype=dtype)
    chunks = []
    for row, col in all_chunks(tiles):
        rect = chunk_rect(width, height, tiles, row, col)
        path = tmp_path / f"{row}-{col}.png"
        write_png(path, frame[rect.y0 : rect.y1, rect.x0 : rect.x1])
        chunks.append((rect, path))
    stitch_files(chunks, width, height, tmp_path / "out.png", thumbnail=tmp_path / "t.png")
    assert np.array_equal(read_png(tmp_path / "out.png"), frame)
    assert png_header(tmp_path / "t.png")[0] == width  # smaller than a thumbnail: kept as is


def test_a_big_frame_is_stitched_with_the_memory_of_one_band(tmp_path: Path) -> None:
    import tracemalloc

    width = height = 2000  # 16 MB as 8-bit RGBA; 8x8 chunks: a band is an eighth of it
    chunk = np.full((height // 8, width // 8, 4), 200, dtype=np.uint8)
    chunks = []
    for row, col in all_chunks(8):
        path = tmp_path / f"{row}-{col}.png"
        write_png(path, chunk)
        chunks.append((chunk_rect(width, height, 8, row, col), path))
    tracemalloc.start()
    try:
        stitch_files(chunks, width, height, tmp_path / "out.png", thumbnail=tmp_path / "t.png")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < width * height * 4 // 2, f"peak {peak} bytes for a {width}x{height} frame"
    assert png_header(tmp_path / "out.png")[:2] == (width, height)
    assert png_header(tmp_path / "t.png")[0] == 320


def test_stitching_names_the_chunk_files_that_are_missing_or_damaged(tmp_path: Path) -> None:
    from blendfarm.errors import BadChunks

    chunks = []
    for row, col in all_chunks(2):
        path = tmp_path / f"{row}-{col}.png"
        write_png(path, np.zeros((5, 5, 3), dtype=np.uint8))
        chunks.append((chunk_rect(10, 10, 2, row, col), path))
    (tmp_path / "1-1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(BadChunks) as caught:
        stitch_files(chunks, 10, 10, tmp_path / "out.png")
    assert [p.name for p in caught.value.paths] == ["1-1.png"]
    (tmp_path / "0-1.png").unlink()
    with pytest.raises(BadChunks, match="missing") as caught:
        stitch_files(chunks, 10, 10, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists() and not list(tmp_path.glob(".*tmp*"))


def test_streaming_frames_do_not_each_remake_the_thumbnail_but_the_result_shows_the_last(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame lands within the thumbnail's interval (made an hour here, so no machine is
    slow enough to see otherwise): the first frame makes the thumbnail, the next ones leave
    it, and the last frame stitched is in it once the project is done."""
    monkeypatch.setattr(compositing, "THUMBNAIL_EVERY", 3600.0)
    farm.register()
    pid = farm.submit({"frames": "1-3", "tiles": "1"}).json()["id"]
    probe = farm.lease()
    assert probe is not None and farm.answer(probe, {**PROBE, "frame_end": 3}).status_code == 200
    thumbnail = farm.settings.data / "projects" / pid / "thumbnail.png"
    frames, shown = [], []
    while (task := farm.lease()) is not None:
        assert farm.answer(task).status_code == 200
        farm.background.composite_ready()
        frames.append(task["frame"])
        shown.append(int(read_png(thumbnail)[0, 0, 0]))
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    assert len(frames) == 3
    assert shown[:2] == [frames[0] * 40] * 2  # apphelpers' chunks: grey frame * 40
    assert shown[2] == frames[2] * 40
