"""`blendfarm demo`: make a small project with Blender, submit it twice, say where to watch.

main.py registers it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer

from ..addon.blendfarm_blender.farm import dashboard_url
from ..addon.sending import submission_fields, submit_blend
from ..demo import JOBS, make_demo_project
from ..errors import BlendfarmError
from ..node.blender import BPY, bpy_version, find_blender
from .context import SERVER_OPTION, api_for, console, err_console, friendly


@friendly
def demo(
    ctx: typer.Context,
    blender: str = typer.Option(
        "",
        "--blender",
        metavar="PATH",
        show_default=False,
        help="The Blender that makes the scene: a path, or bpy (default: `blender` on PATH, "
        "else the bpy module).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        metavar="DIR",
        help="Keep the demo's .blend files in DIR (default: a temporary folder).",
    ),
    server: str | None = SERVER_OPTION,
) -> None:
    """Render a demo project: a tiled still and a short animation.

    Blender makes a small scene (a textured plane, a cube linked from a library, a moving
    sphere); it is packed and submitted as `blendfarm submit scene.blend` would, once as a
    still cut into 2×2 chunks and once as an eight-frame animation.
    """
    api = api_for(ctx, server)
    api.health()  # an unreachable farm says so before Blender runs
    executable = _scene_blender(blender)
    with tempfile.TemporaryDirectory(prefix="blendfarm-demo-") as tmp:
        folder = out or Path(tmp)
        err_console.print(f"making the demo scene with {executable}…", highlight=False)
        blend = make_demo_project(executable, folder)
        submitted = []
        for job in JOBS:
            fields = submission_fields(job.title, job.frame, job.frames, job.tiles, job.overscan)
            project = submit_blend(api, blend, fields, _quiet)
            submitted.append(project)
            console.print(f"submitted [bold]{project.title}[/bold] as [cyan]{project.id}[/cyan]")
    if out is not None:
        console.print(f"the demo's files are in {folder}", highlight=False)
    still, animation = submitted
    for line in (
        f"watch them in the dashboard: {dashboard_url(api.server)}",
        f"or in the shell:             blendfarm status --watch --server {api.server}",
        f"then download the still:     blendfarm fetch {still.id} --server {api.server}",
        f"and the animation (mp4):     blendfarm fetch {animation.id} --server {api.server}",
    ):
        console.print(line, highlight=False, soft_wrap=True)


def _quiet(event: dict[str, Any]) -> None:
    if event.get("event") == "plan":
        for missing in event.get("missing") or []:
            err_console.print(f"[yellow]warning:[/yellow] missing file: {missing}")


def _scene_blender(given: str) -> str:
    """The Blender asked for; else `blender` on PATH; else the bpy module when installed."""
    try:
        return find_blender(given)
    except BlendfarmError:
        if given or not bpy_version():
            raise
        return BPY
