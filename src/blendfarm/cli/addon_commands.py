"""`blendfarm addon install|path`: the Blender add-on, and `addon submit`, the (hidden) command
the add-on runs to pack and upload the open .blend, telling its progress as JSON lines.

main.py registers them as the `addon` group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from ..addon import build_zip, zip_location
from ..addon.install import install as install_addon
from ..addon.sending import submission_fields, submit_blend
from ..errors import BlendfarmError
from ..node.blender import blender_version, find_blender
from .context import SERVER_OPTION, api_for, console, err_console, friendly


@friendly
def install(
    blender: str = typer.Option(
        "",
        "--blender",
        metavar="PATH",
        show_default=False,
        help="The Blender to install it into (default: `blender` on PATH).",
    ),
) -> None:
    """Install the blendfarm add-on into Blender and enable it.

    Blender 4.2 and later get it as an extension, older ones as a legacy add-on; either
    way it goes to that Blender's user folders (BLENDER_USER_CONFIG and
    BLENDER_USER_SCRIPTS choose them, as for Blender). Its panel is in Render Properties ›
    blendfarm.
    """
    executable = find_blender(blender)
    version = blender_version(executable)
    zip_path = build_zip(zip_location())
    done = install_addon(executable, version, zip_path)
    how = "an extension" if done.extension else "a legacy add-on"
    console.print(
        f"installed and enabled the blendfarm add-on ({done.module}) in Blender {version}"
        f" as {how}: Render Properties › blendfarm",
        highlight=False,
        soft_wrap=True,
    )


@friendly
def path() -> None:
    """Print the add-on's zip, for installing it by hand.

    In Blender: Edit › Preferences › Add-ons › Install... (before 4.2), or Get Extensions ›
    Install from Disk... (4.2 and later).
    """
    console.print(str(build_zip(zip_location())), highlight=False, soft_wrap=True)


def submit(
    ctx: typer.Context,
    blend: Path = typer.Argument(..., metavar="FILE", help="The .blend to send."),
    title: str = typer.Option("", "--title", metavar="TITLE", help="The project's title."),
    frame: int = typer.Option(None, "--frame", metavar="N", help="Render frame N as a still."),
    frames: str = typer.Option("", "--frames", metavar="A-B", help="Render frames A to B."),
    tiles: int = typer.Option(1, "--tiles", min=1, metavar="N", help="N×N chunks per frame."),
    overscan: int = typer.Option(0, "--overscan", min=0, metavar="PX", help="Overscan."),
    priority: int = typer.Option(
        50, "--priority", min=0, max=100, metavar="N", help="0-100: higher gets nodes first."
    ),
    finish: str = typer.Option(
        "auto", "--finish", metavar="MODE", help="never, auto or always (see submit)."
    ),
    server: str | None = SERVER_OPTION,
) -> None:
    """Pack and upload FILE as `submit` does, printing progress as JSON lines (for the
    Blender add-on)."""

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    try:
        fields = submission_fields(title, frame, frames, tiles, overscan, priority, finish)
        submit_blend(api_for(ctx, server), blend, fields, emit)
    except BlendfarmError as exc:
        emit({"event": "error", "message": exc.message})
        err_console.print(f"error: {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        message = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
        emit({"event": "error", "message": message})
        err_console.print(f"error: {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
