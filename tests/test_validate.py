from __future__ import annotations

import pytest

from blendfarm.errors import BadInput
from blendfarm.server.validate import clean_log, parse_frames, parse_submission, plan_from_probe

PROBE = {
    "resolution_x": 203,
    "resolution_y": 157,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": 10,
    "fps": 30,
    "fps_base": 1.001,
}


def project(**kw: object) -> dict[str, object]:
    return {
        "frame_start": None,
        "frame_end": None,
        "animation": True,
        "tiles": 1,
        "overscan": 0,
        **kw,
    }


def test_frames_are_inclusive_ranges() -> None:
    assert parse_frames("1-5") == (1, 5)
    assert parse_frames("7") == (7, 7)
    assert parse_frames("-3--1") == (-3, -1)
    with pytest.raises(BadInput):
        parse_frames("1-x")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"frames": "5-1"}, "before it starts"),
        ({"frame": "1.5"}, "whole number"),
        ({"tiles": "0"}, "at least 1"),
        ({"tiles": "65"}, "at most 64"),
        ({"overscan": "-1"}, "at least 0"),
        ({"title": "x" * 201}, "longer"),
        ({"colour": "red"}, "unknown field"),
        ({"frame": "1", "frames": "1-2"}, "either"),
        ({"frame_start": "1"}, "together"),
        ({"frame_start": "1", "frame_end": "3", "animation": "false"}, "still"),
    ],
)
def test_bad_fields_are_refused_with_a_reason(form: dict[str, str], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_submission(form, max_tiles=64)


def test_good_fields() -> None:
    sub = parse_submission({"frames": "1-4", "tiles": "2", "title": " Hi "}, 64)
    assert (sub.frame_start, sub.frame_end, sub.animation, sub.tiles, sub.title) == (
        1,
        4,
        True,
        2,
        "Hi",
    )
    still = parse_submission({"frame_start": "3", "frame_end": "3", "animation": "false"}, 64)
    assert (still.frame_start, still.animation) == (3, False)
    scene = parse_submission({}, 64)
    assert scene.frame_start is None and scene.animation


def test_plan_uses_the_scene_range_when_none_was_given() -> None:
    plan = plan_from_probe(project(), PROBE)
    assert plan.frames == list(range(1, 11)) and plan.animation
    assert (plan.width, plan.height) == (203, 157)
    single = plan_from_probe(project(), {**PROBE, "frame_end": 1})
    assert single.frames == [1] and not single.animation


def test_plan_warns_about_compositor_and_denoising_seams_when_chunks_are_finished_alone() -> None:
    seamless = {**PROBE, "compositor": True, "denoising": True}
    assert plan_from_probe(project(tiles=2, finish="auto"), seamless).warnings == []
    plan = plan_from_probe(
        project(tiles=2, finish="never"),
        {**PROBE, "compositor": True, "denoising": True, "missing": ["//tex/gone.png"]},
    )
    text = " ".join(plan.warnings)
    assert "compositor" in text and "overscan" in text and "gone.png" in text
    assert plan_from_probe(project(tiles=1), {**PROBE, "compositor": True}).warnings == []


def test_plan_refuses_more_tiles_than_pixels() -> None:
    with pytest.raises(BadInput, match="cannot be cut"):
        plan_from_probe(project(tiles=64), {**PROBE, "resolution_y": 40})


def test_logs_are_truncated_not_refused() -> None:
    lines = clean_log(["x" * 5000] * 1000)
    assert len(lines) == 500 and all(len(x) == 2000 for x in lines)
    assert clean_log("not a list") == []
