"""Packing a .blend and submitting it, told as progress events.

`blendfarm addon submit` (what the Blender add-on runs) prints these events as JSON lines and
`blendfarm demo` shows them as text. The packing is the CLI's for a lone .blend
(blender-asset-tracer through `blendfarm.packing`), so a file sent from Blender arrives
exactly as `blendfarm submit FILE.blend` would send it.

Events, in order (each a dict with an "event" key):
  {"event": "plan", "blend": "scene.blend", "files": [...], "missing": [...], "size": BYTES}
  {"event": "packing", "done": BYTES, "total": BYTES}          (several)
  {"event": "uploading", "done": BYTES, "total": BYTES}        (several)
  {"event": "submitted", "project": {...the project as GET /api/projects/ID shows it...}}
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import protocol as p
from ..archive import is_blend_file
from ..client import ApiClient
from ..errors import BadInput
from ..owner_keys import remember
from ..packing import pack_blend, plan_blend
from ..parsing import parse_finish, parse_frames

Emit = Callable[[dict[str, Any]], None]
STEPS = 100  # progress events per phase, at most


class Meter:
    """Counts bytes of one phase and emits an event each time another 1/STEPS is done."""

    def __init__(self, event: str, total: int, emit: Emit):
        self.event = event
        self.total = max(total, 0)
        self.emit = emit
        self.done = 0
        self._shown = -1

    def __call__(self, count: int) -> None:
        self.done += count
        step = min(STEPS, self.done * STEPS // self.total) if self.total else STEPS
        if step != self._shown:
            self._shown = step
            self.emit({"event": self.event, "done": self.done, "total": self.total})

    def finish(self) -> None:
        if self._shown != STEPS:
            self._shown = STEPS
            self.emit({"event": self.event, "done": self.total, "total": self.total})


def submit_blend(api: ApiClient, blend: Path, fields: Mapping[str, str], emit: Emit) -> p.Project:
    """Pack `blend` with everything it uses, upload it with the submission's `fields`
    (title, frame or frames, tiles, overscan, finish) and return the new project."""
    if not blend.is_file():
        raise BadInput(f"{blend} does not exist")
    if not is_blend_file(blend):
        raise BadInput(f"{blend.name} is not a .blend file")
    report = plan_blend(blend)
    emit(
        {
            "event": "plan",
            "blend": report.blend,
            "files": report.files,
            "missing": report.missing,
            "size": report.size,
        }
    )
    with tempfile.TemporaryDirectory(prefix="blendfarm-") as tmp:
        packed = Path(tmp) / f"{blend.stem}.zip"
        packing = Meter("packing", report.size, emit)
        pack_blend(blend, packed, packing)
        packing.finish()
        uploading = Meter("uploading", packed.stat().st_size, emit)
        project = api.submit(packed, {**fields, "blend": report.blend}, uploading)
        uploading.finish()
    if project.owner_key:  # `blendfarm rm/pause/...` work from this machine, as after submit
        remember(project.id, project.owner_key)
    emit({"event": "submitted", "project": p.to_builtins(project)})
    return project


def submission_fields(
    title: str = "",
    frame: int | None = None,
    frames: str = "",
    tiles: int = 1,
    overscan: int = 0,
    priority: int = 50,
    finish: str = "auto",
) -> dict[str, str]:
    """The form fields of a submission, as `blendfarm submit` sends them."""
    if frame is not None and frames:
        raise BadInput("give --frame or --frames, not both")
    fields = {"tiles": str(tiles), "overscan": str(overscan), "priority": str(priority)}
    if parse_finish(finish) != "auto":
        fields["finish"] = parse_finish(finish)
    if title:
        fields["title"] = title
    if frame is not None:
        fields["frame"] = str(frame)
    if frames:
        start, end = parse_frames(frames)
        if end < start:
            raise BadInput(f"frames {frames}: the range ends before it starts")
        fields["frames"] = f"{start}-{end}"
    return fields
