"""Checking what people and nodes send, as pure functions over plain values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput
from ..limits import MAX_FRAMES, Limits, check_size
from ..parsing import parse_bool as _bool
from ..parsing import parse_finish, parse_frames
from ..scheduler import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, FrameOrder, parse_tags
from ..tiles import effective_size

SUBMIT_FIELDS = frozenset(
    {
        "file",
        "blend",
        "title",
        "animation",
        "frame",
        "frames",
        "frame_start",
        "frame_end",
        "tiles",
        "device",
        "overscan",
        "priority",
        "paused",
        "require_tags",
        "order",
        "notify",
        "finish",
    }
)
MAX_TITLE = 200
MAX_OVERSCAN = 4096
MAX_LOG_LINE = 2000
MAX_LOG_LINES = 500
MAX_BLOCKED = 5  # notes a probe may give on the Python it did not run
MAX_NOTE = 200


DEVICES = ("any", "gpu", "cpu", "scene")


@dataclass(frozen=True)
class Submission:
    title: str
    blend: str | None
    animation: bool
    frame_start: int | None
    frame_end: int | None
    tiles: int
    overscan: int
    device: str = "any"
    priority: int = DEFAULT_PRIORITY
    paused: bool = False
    require_tags: frozenset[str] = frozenset()
    order: FrameOrder = FrameOrder.PREVIEW
    notify: str | None = None
    finish: str = "auto"


def _int(name: str, raw: str, low: int | None = None, high: int | None = None) -> int:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?\d{1,9}", text):
        raise BadInput(f"{name} must be a whole number, not {raw[:40]!r}")
    value = int(text)
    if low is not None and value < low:
        raise BadInput(f"{name} must be at least {low}")
    if high is not None and value > high:
        raise BadInput(f"{name} must be at most {high}")
    return value


def parse_submission(form: Mapping[str, str], max_tiles: int) -> Submission:
    """The fields of an upload (everything but the file), checked."""
    unknown = sorted(set(form) - SUBMIT_FIELDS)
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r}")
    title = form.get("title", "").strip()
    if len(title) > MAX_TITLE:
        raise BadInput(f"the title is longer than {MAX_TITLE} characters")
    if any(ord(ch) < 32 for ch in title):
        raise BadInput("the title holds control characters")
    tiles = _int("tiles", form.get("tiles", "1") or "1", 1, max_tiles)
    overscan = _int("overscan", form.get("overscan", "0") or "0", 0, MAX_OVERSCAN)
    start: int | None = None
    end: int | None = None
    given = [k for k in ("frame", "frames") if form.get(k, "").strip()]
    pair = [k for k in ("frame_start", "frame_end") if form.get(k, "").strip()]
    if len(given) + (1 if pair else 0) > 1:
        raise BadInput("give either frame, frames or frame_start/frame_end")
    animation_raw = form.get("animation")
    if "frame" in given:
        start = end = _int("frame", form["frame"])
        animation = False
    elif "frames" in given:
        start, end = parse_frames(form["frames"])
        animation = True
    elif pair:
        if len(pair) != 2:
            raise BadInput("frame_start and frame_end go together")
        start = _int("frame_start", form["frame_start"])
        end = _int("frame_end", form["frame_end"])
        animation = start != end if animation_raw is None else _bool("animation", animation_raw)
    else:
        animation = True if animation_raw is None else _bool("animation", animation_raw)
    if start is not None and end is not None:
        if end < start:
            raise BadInput(f"the frame range ends ({end}) before it starts ({start})")
        if end - start + 1 > MAX_FRAMES:
            raise BadInput(f"more than {MAX_FRAMES} frames")
        if not animation and start != end:
            raise BadInput("a still renders one frame: frame_start must equal frame_end")
    blend = form.get("blend", "").strip() or None
    device = form.get("device", "").strip().lower() or "any"
    if device not in DEVICES:
        raise BadInput(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    priority = _int(
        "priority", form.get("priority", "") or str(DEFAULT_PRIORITY), MIN_PRIORITY, MAX_PRIORITY
    )
    paused = _bool("paused", form.get("paused", "") or "false")
    try:
        tags = parse_tags(form.get("require_tags", ""))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    order_text = (form.get("order", "") or FrameOrder.PREVIEW.value).strip().lower()
    if order_text not in {o.value for o in FrameOrder}:
        raise BadInput(f"order is preview or sequential, not {order_text[:40]!r}")
    notify = form.get("notify", "").strip() or None
    if notify is not None:
        check_notify_url(notify)
    finish = parse_finish(form.get("finish", ""))
    return Submission(
        title,
        blend,
        animation,
        start,
        end,
        tiles,
        overscan,
        device=device,
        priority=priority,
        paused=paused,
        require_tags=tags,
        order=FrameOrder(order_text),
        notify=notify,
        finish=finish,
    )


def check_notify_url(url: str) -> None:
    """BadInput unless `url` looks like an Apprise URL ('scheme://...', one line)."""
    if len(url) > 2000 or not re.fullmatch(r"[a-z][a-z0-9+.-]{0,30}://\S+", url):
        raise BadInput("a notification URL is an Apprise URL such as ntfy://topic or json://host")


@dataclass(frozen=True)
class Plan:
    """What a probed project renders."""

    width: int
    height: int
    frames: list[int]
    animation: bool
    fps: float
    fps_base: float
    warnings: list[str]


def _name(value: object, limit: int = MAX_NOTE) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unrenderable(probe: Mapping[str, Any]) -> str | None:
    """Why no node can render the probed scene at all, as one sentence with the fix; None
    when nothing stops it. A node too old to check leaves the keys out: nothing is found."""
    blender = _name(probe.get("blender_version") or "", 40)
    their_blender = f"the node's Blender {blender}" if blender else "the node's Blender"
    if probe.get("camera") is False:
        return "the scene has no active camera: set one in Scene Properties › Camera"
    libraries = probe.get("missing_libraries")
    if isinstance(libraries, list) and libraries:
        more = f" and {len(libraries) - 1} more" if len(libraries) > 1 else ""
        return (
            f"the scene links a library that is not in the project ({_name(libraries[0])}{more}):"
            " submit the .blend itself so blendfarm packs its libraries, or put the library"
            " in the zip at that path relative to the .blend"
        )
    if probe.get("engine_available") is False:
        engine = _name(probe.get("engine") or "its engine", 64)
        return (
            f"the scene renders with {engine}, which {their_blender} does not have: enable"
            " that engine's add-on on every node, or choose another engine in Render Properties"
        )
    if probe.get("denoiser_available") is False:
        return (
            f"the scene is denoised with OpenImageDenoise, which {their_blender} is built without"
            ' (Blender says "Build without OpenImageDenoiser"): turn Denoise off in Render'
            " Properties › Sampling, or give the farm an official Blender with"
            " `blendfarm blender upload`"
        )
    return None


def plan_from_probe(
    project: Mapping[str, Any], probe: Mapping[str, Any], limits: Limits | None = None
) -> Plan:
    """Frames, size and warnings of a project once a node has read its scene; BadInput with
    one sentence and its fix when the scene cannot be rendered."""
    limits = limits or Limits()
    try:
        width, height = effective_size(
            int(probe["resolution_x"]),
            int(probe["resolution_y"]),
            int(probe["resolution_percentage"]),
        )
        fps, fps_base = float(probe["fps"]), float(probe["fps_base"])
        scene_start, scene_end = int(probe["frame_start"]), int(probe["frame_end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"the probe result is incomplete: {exc}") from None
    reason = unrenderable(probe)
    if reason:
        raise BadInput(reason)
    if width < 1 or height < 1:
        raise BadInput(
            f"the scene renders an empty image ({width}x{height}): raise its resolution or"
            " its resolution % in Output Properties › Format"
        )
    if fps <= 0 or fps_base <= 0:
        raise BadInput(
            "the scene's frame rate is not positive: set one in Output Properties › Format"
        )
    start, end = project["frame_start"], project["frame_end"]
    animation = bool(project["animation"])
    if start is None:
        start, end = scene_start, scene_end
        animation = end > start
        if end < start:
            raise BadInput(
                f"the scene's frame range ends ({end}) before it starts ({start}):"
                " fix Frame Start and End in Output Properties › Frame Range"
            )
    tiles = int(project["tiles"])
    if tiles > min(width, height):
        raise BadInput(f"a {width}x{height} frame cannot be cut into {tiles}x{tiles} chunks")
    if max(width, height) > limits.max_side:
        raise BadInput(
            f"the scene renders {width}x{height} pixels, more than this farm takes "
            f"({limits.max_side} per side): lower the resolution or its percentage"
        )
    check_size(end - start + 1, tiles, limits)
    warnings = []
    # Unless the project says never, such frames render raw and are finished whole: no seam.
    per_chunk = tiles > 1 and project.get("finish", "auto") == "never"
    if per_chunk and probe.get("compositor"):
        warnings.append(
            "the scene uses compositor nodes: effects such as glare, blur or lens distortion "
            "run per chunk and will show seams at chunk edges (finish auto denoises and "
            "composites whole frames)"
        )
    if per_chunk and probe.get("denoising") and not int(project["overscan"]):
        warnings.append("denoising runs per chunk: use overscan to hide seams at chunk edges")
    libraries = set(map(str, probe.get("missing_libraries") or []))
    missing = [str(m) for m in probe.get("missing") or [] if str(m) not in libraries]
    if missing:
        warnings.append("files the scene needs are missing: " + ", ".join(missing[:10]))
    blocked = probe.get("scripts_blocked")
    if isinstance(blocked, list):
        for note in blocked[:MAX_BLOCKED]:
            warnings.append(f"{str(note)[:MAX_NOTE]} (nodes run no Python from submitted files)")
    return Plan(width, height, list(range(start, end + 1)), animation, fps, fps_base, warnings)


def same_plan(a: Plan, b: Plan) -> bool:
    """Whether two plans render the same frames at the same size and rate (warnings aside)."""
    return (a.width, a.height, a.frames, a.animation, a.fps, a.fps_base) == (
        b.width,
        b.height,
        b.frames,
        b.animation,
        b.fps,
        b.fps_base,
    )


def _described(plan: Plan) -> str:
    frames = (
        f"frame {plan.frames[0]}"
        if len(plan.frames) == 1
        else (f"frames {plan.frames[0]}-{plan.frames[-1]}")
    )
    return f"{plan.width}x{plan.height}, {frames} at {plan.fps / plan.fps_base:.6g} fps"


def disagreement(read: Plan, probed: Plan) -> str:
    """The warning of a project whose probe found another plan than the one read from the
    file, when chunks were already rendered by the file's plan (which it keeps)."""
    return (
        f"Blender on the node sees the scene as {_described(probed)}, not as the file says"
        f" ({_described(read)}; a script or add-on may change it): chunks were already"
        " rendered as the file says, so the project keeps that; resubmit it to render what"
        " Blender sees"
    )


def clean_log(lines: object) -> list[str]:
    """Log lines from a node: strings only, each and all truncated (never refused)."""
    if not isinstance(lines, list):
        return []
    out = [str(line)[:MAX_LOG_LINE] for line in lines[-MAX_LOG_LINES:]]
    return out
