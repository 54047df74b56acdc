"""The server takes chunks of each kind and makes results in the scene's format (in process,
nodes played by the test)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from apphelpers import NODE, PROBE, InProcessFarm, png_bytes
from blendfarm.exr import read_exr, write_exr
from blendfarm.frame_files import read_jpeg

EXR_HALF = {"file_format": "OPEN_EXR", "color_depth": "16", "exr_codec": "ZIP"}


def exr_bytes(tmp: Path, w: int, h: int, value: float, cut: int = 0) -> bytes:
    path = tmp / "c.exr"
    chans = {c: np.full((h, w), value, np.float16) for c in "RGBA"}
    write_exr(path, [("", chans, {})])
    data = path.read_bytes()
    return data[: len(data) - cut]


def start(farm: InProcessFarm, form: dict[str, str], output: dict[str, Any] | None) -> str:
    pid = str(farm.submit(form).json()["id"])
    probe = dict(PROBE, output=output) if output is not None else PROBE
    task = farm.lease()
    assert task is not None and task["kind"] == "probe"
    assert farm.answer(task, probe).status_code == 200
    return pid


def send(farm: InProcessFarm, task: dict[str, Any], data: bytes, kind: str | None) -> Any:
    params = {"lease": task["lease"]} | ({"kind": kind} if kind else {})
    return farm.client.put(
        f"/api/tasks/{task['id']}/result", params=params, headers=NODE, content=data
    )


def size_of(task: dict[str, Any]) -> tuple[int, int]:
    rect = task["rect"]
    return rect["x1"] - rect["x0"], rect["y1"] - rect["y0"]


def render_all(farm: InProcessFarm, tmp: Path, kind_of=lambda task: "exr") -> None:
    """Answer every chunk: an EXR (value = frame) or a PNG, as `kind_of(task)` says."""
    while (task := farm.lease()) is not None:
        w, h = size_of(task)
        kind = kind_of(task)
        data = (
            exr_bytes(tmp, w, h, task["frame"] / 4)
            if kind == "exr"
            else png_bytes(w, h, task["frame"])
        )
        assert send(farm, task, data, kind).status_code == 200
    farm.background.composite_all()


def test_an_exr_still_is_stitched_into_an_exr_result(farm: InProcessFarm, tmp_path: Path) -> None:
    pid = start(farm, {"frame": "1", "tiles": "2"}, EXR_HALF)
    render_all(farm, tmp_path)
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["state"] == "done", project
    assert project["result_type"] == "image/x-exr"
    assert project["output_format"] == "OpenEXR half" and project["frames_url"] is None
    got = farm.client.get(f"/api/projects/{pid}/result")
    assert got.status_code == 200 and got.headers["content-type"] == "image/x-exr"
    assert f"{pid}.exr" in got.headers["content-disposition"]
    (tmp_path / "r.exr").write_bytes(got.content)
    image = read_exr(tmp_path / "r.exr")
    assert (image.width, image.height) == (31, 23)
    assert (image.pixels[0]["R"] == np.float16(0.25)).all()
    assert farm.client.get(f"/api/projects/{pid}/thumbnail").status_code == 200


@pytest.mark.parametrize(
    ("body", "kind", "why"),
    [
        ("cut", "exr", "damaged"),
        ("small", "exr", "expected"),
        ("png", "exr", "not an OpenEXR"),
        ("exr", None, "not a PNG"),
        ("exr", "tiff", "kind"),
    ],
)
def test_a_bad_chunk_result_is_refused_and_leaves_nothing(
    farm: InProcessFarm, tmp_path: Path, body: str, kind: str | None, why: str
) -> None:
    pid = start(farm, {"frame": "1", "tiles": "2"}, EXR_HALF)
    task = farm.lease()
    assert task is not None
    w, h = size_of(task)
    data = {
        "cut": exr_bytes(tmp_path, w, h, 1.0, cut=40),
        "small": exr_bytes(tmp_path, w - 1, h, 1.0),
        "png": png_bytes(w, h),
        "exr": exr_bytes(tmp_path, w, h, 1.0),
    }[body]
    answer = send(farm, task, data, kind)
    assert answer.status_code == 400 and why in answer.json()["error"]["message"]
    chunks = farm.farm.data.project_dir(pid) / "chunks"
    assert not list(chunks.iterdir())
    assert not list((farm.farm.data.root / "tmp").iterdir())
    assert farm.client.get(f"/api/projects/{pid}").json()["chunks_done"] == 0


def test_a_jpeg_animation_gives_the_mp4_and_the_frames_in_jpeg(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    jpeg = {"file_format": "JPEG", "color_mode": "RGB", "quality": 90}
    pid = start(farm, {"frames": "1-2", "tiles": "2"}, jpeg)
    render_all(farm, tmp_path, kind_of=lambda task: "png")
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["state"] == "done" and project["result_type"] == "video/mp4"
    video = farm.client.get(f"/api/projects/{pid}/result")
    (tmp_path / "r.mp4").write_bytes(video.content)
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "r.mp4"))[0] == 2
    frames = farm.client.get(project["frames_url"])
    assert frames.status_code == 200 and frames.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(frames.content)) as zf:
        assert sorted(zf.namelist()) == [f"{pid}-0001.jpg", f"{pid}-0002.jpg"]
        (tmp_path / "f.jpg").write_bytes(zf.read(f"{pid}-0002.jpg"))
    assert read_jpeg(tmp_path / "f.jpg").shape == (23, 31, 3)
    one = farm.client.get(f"/api/projects/{pid}/frames/2")
    assert one.status_code == 200 and one.headers["content-type"] == "image/jpeg"
    assert farm.client.get(f"/api/projects/{pid}/frames/3").status_code == 404
    assert farm.client.get(f"/api/projects/{pid}/frames/x").status_code == 400


def test_the_mp4_is_fed_while_the_animation_renders(farm: InProcessFarm, tmp_path: Path) -> None:
    pid = start(farm, {"frames": "1-2", "order": "sequential"}, None)
    first = farm.lease()
    assert first is not None and first["frame"] == 1
    assert send(farm, first, png_bytes(31, 23, 1), None).status_code == 200
    farm.background.composite_all()
    assert farm.farm.compositor.encoded(pid) == 1  # before the last frame is rendered
    render_all(farm, tmp_path, kind_of=lambda task: "png")
    assert farm.farm.compositor.encoded(pid) == 0  # finished and handed over
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    mp4 = farm.farm.data.result(pid, "mp4")
    assert imageio_ffmpeg.count_frames_and_secs(str(mp4))[0] == 2


def test_the_mp4_grows_frame_by_frame_as_each_frame_lands(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    # The compositor is woken for the one frame whose last chunk landed (composite_ready):
    # the encoder keeps the frames it has and takes the next, never starting over.
    pid = start(farm, {"frames": "1-3", "order": "sequential"}, None)
    for done in (1, 2):
        task = farm.lease()
        assert task is not None and task["frame"] == done
        assert send(farm, task, png_bytes(31, 23, done), None).status_code == 200
        farm.background.composite_ready()
        assert farm.farm.compositor.encoded(pid) == done
    render_all(farm, tmp_path, kind_of=lambda task: "png")
    assert imageio_ffmpeg.count_frames_and_secs(str(farm.farm.data.result(pid, "mp4")))[0] == 3


def test_a_requeued_frame_encodes_the_mp4_again(farm: InProcessFarm, tmp_path: Path) -> None:
    pid = start(farm, {"frames": "1-3", "order": "sequential"}, None)
    for _ in range(2):
        task = farm.lease()
        assert task is not None
        assert send(farm, task, png_bytes(31, 23, task["frame"]), None).status_code == 200
    farm.background.composite_all()
    assert farm.farm.compositor.encoded(pid) == 2
    farm.farm.store.tasks.requeue(pid, [(1, 0, 0)])
    farm.background.composite_all()
    assert farm.farm.compositor.encoded(pid) == 0  # frame 1 goes back to work
    render_all(farm, tmp_path, kind_of=lambda task: "png")
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    assert imageio_ffmpeg.count_frames_and_secs(str(farm.farm.data.result(pid, "mp4")))[0] == 3


def test_the_raw_zip_holds_chunks_of_mixed_extensions(farm: InProcessFarm, tmp_path: Path) -> None:
    # A node that renders only PNG took frame 1 of an EXR scene; a newer one frame 2.
    pid = start(farm, {"frames": "1-2", "tiles": "2"}, EXR_HALF)
    render_all(farm, tmp_path, kind_of=lambda task: "png" if task["frame"] == 1 else "exr")
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["state"] == "done", project
    raw = farm.client.get(f"/api/projects/{pid}/raw")
    with zipfile.ZipFile(io.BytesIO(raw.content)) as zf:
        names = sorted(zf.namelist())
    assert names == sorted(
        [f"{pid}-1-{r}-{c}.png" for r in range(2) for c in range(2)]
        + [f"{pid}-2-{r}-{c}.exr" for r in range(2) for c in range(2)]
    )
    frames = farm.client.get(f"/api/projects/{pid}/frames")
    with zipfile.ZipFile(io.BytesIO(frames.content)) as zf:
        assert sorted(zf.namelist()) == [f"{pid}-0001.png", f"{pid}-0002.exr"]


def test_a_chunk_of_another_kind_than_its_frame_renders_again(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = start(farm, {"frame": "1", "tiles": "2"}, EXR_HALF)
    odd = {"seen": False}

    def kind_of(task: dict[str, Any]) -> str:
        if (task["row"], task["col"]) == (1, 1) and not odd["seen"]:
            odd["seen"] = True
            return "png"
        return "exr"

    render_all(farm, tmp_path, kind_of)
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "rendering"
    render_all(farm, tmp_path)  # the odd chunk went back to the queue
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    chunks = sorted(p.name for p in (farm.farm.data.project_dir(pid) / "chunks").iterdir())
    assert chunks == [f"1-{r}-{c}.exr" for r in range(2) for c in range(2)]
