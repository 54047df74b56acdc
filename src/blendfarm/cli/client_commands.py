"""Client commands: submit, status, fetch, rm, retry (main.py registers them)."""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from ..addon.sending import submission_fields
from ..archive import folder_files, inspect_zip, is_blend_file, zip_folder
from ..client import status_json
from ..errors import BadInput, Unreachable
from ..owner_keys import recall, remember
from .context import (
    SERVER_OPTION,
    api_for,
    console,
    err_console,
    friendly,
    transfer_progress,
    uploading,
)
from .tables import size_text, status_table

OWNER_PASSWORD_OPTION = typer.Option(
    None,
    "--password",
    envvar="BLENDFARM_PASSWORD",
    metavar="PASSWORD",
    help="The admin password, for a project this shell did not submit.  [env: BLENDFARM_PASSWORD]",
)


def _project_folder(path: Path) -> bool:
    """True for a folder with a .blend in it; BadInput for a path that is no project at all."""
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    if not path.is_dir():
        return False
    if not any(f.suffix.lower() == ".blend" for f in folder_files(path)):
        raise BadInput(f"{path} holds no .blend file")
    return True


def _plan(path: Path, blend: str | None) -> tuple[list[tuple[str, int]], str | None, list[str]]:
    """What would be uploaded for `path`: (files and sizes, the .blend to render, missing)."""
    if _project_folder(path):
        files = folder_files(path)
        listing = [(f.relative_to(path).as_posix(), f.stat().st_size) for f in files]
        blends = [n for n, _ in listing if n.lower().endswith(".blend")]
        return listing, blend or (blends[0] if len(blends) == 1 else None), []
    if path.suffix.lower() == ".blend":
        from ..packing import plan_blend

        report = plan_blend(path)
        return [(f, 0) for f in report.files], blend or report.blend, report.missing
    summary = inspect_zip(path, max_unpacked=2**62, max_ratio=float("inf"))
    with zipfile.ZipFile(path) as zf:
        listing = [(i.filename, i.file_size) for i in zf.infolist() if not i.is_dir()]
    chosen = blend or (summary.blends[0] if len(summary.blends) == 1 else None)
    return listing, chosen, []


def _pack(path: Path, blend: str | None, tmp: Path) -> tuple[Path, str | None]:
    """The file to upload for `path` (a zip as is, a folder zipped, a .blend packed with its
    dependencies) and the .blend to render."""
    if _project_folder(path):
        total = sum(f.stat().st_size for f in folder_files(path))
        out = tmp / f"{path.name or 'project'}.zip"
        with transfer_progress() as progress:
            task = progress.add_task(f"zipping {path.name}", total=total)
            zip_folder(path, out, lambda n: progress.advance(task, n))
        return out, blend
    if path.suffix.lower() == ".blend":
        if not is_blend_file(path):
            raise BadInput(f"{path.name} is not a .blend file")
        from ..packing import pack_blend, plan_blend

        with transfer_progress() as progress:
            task = progress.add_task(f"packing {path.name}", total=plan_blend(path).size or None)
            report = pack_blend(path, tmp / f"{path.stem}.zip", lambda n: progress.advance(task, n))
        err_console.print(f"packed {len(report.files)} file(s) with {path.name}:", highlight=False)
        for name in report.files:
            err_console.print(f"  {name}", highlight=False)
        for missing in report.missing:
            err_console.print(f"[yellow]warning:[/yellow] missing file: {missing}", soft_wrap=True)
        return tmp / f"{path.stem}.zip", blend or report.blend
    return path, blend


def _show_plan(path: Path, blend: str | None, fields: dict[str, str], as_json: bool) -> None:
    listing, chosen, missing = _plan(path, blend)
    if "frame" in fields:
        frames = f"frame {fields['frame']} (a still)"
    elif "frames" in fields:
        frames = f"frames {fields['frames']} (an animation)"
    else:
        frames = "the scene's frame range"
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "files": [{"name": n, "size": s} for n, s in listing],
                    "blend": chosen,
                    "missing": missing,
                    "frames": frames,
                    "tiles": int(fields["tiles"]),
                    "overscan": int(fields["overscan"]),
                }
            )
        )
        return
    table = Table(title=f"would upload {path.name}")
    table.add_column("file")
    table.add_column("size", justify="right")
    for name, size in listing:
        table.add_row(name, size_text(size) if size else "")
    console.print(table)
    console.print(
        f"would render {chosen or '(choose one with --blend)'}: {frames}, "
        f"{fields['tiles']}×{fields['tiles']} chunks, overscan {fields['overscan']} px"
    )
    for m in missing:
        err_console.print(f"[yellow]warning:[/yellow] missing file: {m}", soft_wrap=True)


@friendly
def submit(
    ctx: typer.Context,
    path: Path = typer.Argument(
        ..., metavar="PATH", help="A project .zip, a project folder, or a .blend."
    ),
    blend: str = typer.Option(
        None, "--blend", metavar="FILE", help="The .blend to render, as a path inside the zip."
    ),
    title: str = typer.Option(
        None, "--title", metavar="TITLE", help="A title (default: the .blend's name)."
    ),
    frame: int = typer.Option(None, "--frame", metavar="N", help="Render frame N as a still."),
    frames: str = typer.Option(
        None,
        "--frames",
        metavar="A-B",
        help="Render frames A to B (both included) as an animation.",
    ),
    tiles: int = typer.Option(
        1, "--tiles", min=1, metavar="N", help="Cut every frame into N×N chunks."
    ),
    overscan: int = typer.Option(
        0,
        "--overscan",
        min=0,
        metavar="PX",
        help="Render PX pixels beyond every inner chunk edge, then crop them (hides seams).",
    ),
    device: str = typer.Option(
        "any",
        "--device",
        metavar="DEVICE",
        help="Which node slots may render it: any, gpu (only GPUs), cpu (only CPUs), or scene "
        "(any, keeping the scene's own Cycles device when it is the CPU).",
    ),
    priority: int = typer.Option(
        50, "--priority", min=0, max=100, metavar="N", help="0-100: higher gets nodes first."
    ),
    paused: bool = typer.Option(
        False, "--paused", help="Queue it paused: nothing renders until `blendfarm resume ID`."
    ),
    require_tag: list[str] = typer.Option(
        None,
        "--require-tag",
        metavar="TAG",
        help="Render only on nodes with this tag (node --tags); may be given several times.",
    ),
    order: str = typer.Option(
        "preview",
        "--order",
        metavar="ORDER",
        help="preview: first, last and middle frame first, then the rest; sequential: in order.",
    ),
    notify: str = typer.Option(
        None, "--notify", metavar="URL", help="An Apprise URL told when it is done or fails."
    ),
    finish: str = typer.Option(
        "auto",
        "--finish",
        metavar="MODE",
        help="Tiled frames render raw and a finish task denoises and composites each whole "
        "frame (no seams): auto (when the scene denoises or composites), always, or never.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the new project as JSON."),
    check: bool = typer.Option(
        False, "--check", help="Only show what would be uploaded and rendered; send nothing."
    ),
    server: str | None = SERVER_OPTION,
) -> None:
    """Upload a project and queue it for rendering.

    It renders the scene's frame range unless --frame or --frames says otherwise. PATH is
    a .zip of the project folder, the folder itself (zipped on the way, *.blend1 backups
    left out), or a .blend, packed with every texture and library it uses.
    """
    api = api_for(ctx, server)
    if frame is not None and frames:
        raise BadInput("give --frame or --frames, not both")
    if order not in ("preview", "sequential"):
        raise BadInput(f"--order is preview or sequential, not {order!r}")
    fields = submission_fields(title, frame, frames, tiles, overscan, priority, finish)
    fields["order"] = order
    if device.strip().lower() != "any":
        fields["device"] = device.strip().lower()
    if paused:
        fields["paused"] = "true"
    if require_tag:
        fields["require_tags"] = ",".join(require_tag)
    if notify:
        fields["notify"] = notify
    if check:
        _show_plan(path, blend, fields, as_json)
        return
    with tempfile.TemporaryDirectory(prefix="blendfarm-") as tmp:
        upload, chosen = _pack(path, blend, Path(tmp))
        if chosen:
            fields["blend"] = chosen
        progress, advance = uploading(f"uploading {upload.name}", upload.stat().st_size)
        with progress:
            project = api.submit(upload, fields, advance)
    if project.owner_key:
        remember(project.id, project.owner_key)
    if as_json:
        console.print_json(status_json(project))
        return
    paused_note = " (paused)" if project.state.value == "paused" else ""
    console.print(
        f"submitted [bold]{project.title}[/bold] as [cyan]{project.id}[/cyan]{paused_note}"
    )
    for warning in project.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")


@friendly
def status(
    ctx: typer.Context,
    project_id: str = typer.Argument(None, metavar="ID", help="One project (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep the table live until Ctrl-C."),
    server: str | None = SERVER_OPTION,
) -> None:
    """Show projects, their progress and the server's disk use."""
    api = api_for(ctx, server)
    if project_id:
        project = api.project(project_id)
        if as_json:
            console.print_json(status_json(project))
            return
        snapshot = api.status()
        snapshot.projects = [project]
        console.print(status_table(snapshot))
        for w in project.warnings:
            console.print(f"[yellow]warning:[/yellow] {w}")
        return
    snapshot = api.status()
    if as_json:
        console.print_json(status_json(snapshot.projects))
        return
    if not watch:
        console.print(status_table(snapshot))
        return
    with Live(status_table(snapshot), console=console, refresh_per_second=4) as live:
        while True:
            try:
                for snap in api.events():
                    live.update(status_table(snap))
            except Unreachable:
                time.sleep(2)  # the server went away: wait for it to come back


@friendly
def fetch(
    ctx: typer.Context,
    project_id: str = typer.Argument(..., metavar="ID", help="The project."),
    out: Path = typer.Option(Path("."), "--out", "-o", metavar="DIR", help="Folder to write into."),
    raw: bool = typer.Option(False, "--raw", help="The zip of raw chunks instead of the result."),
    frames: bool = typer.Option(
        False, "--frames", help="An animation's frames in the scene's format, as a zip."
    ),
    server: str | None = SERVER_OPTION,
) -> None:
    """Download a finished project's result (a still in the scene's format, or an
    animation's mp4), an animation's full-quality frames, or the raw chunks."""
    if raw and frames:
        raise BadInput("--raw and --frames: choose one")
    api = api_for(ctx, server)
    kind = "raw" if raw else "frames" if frames else "result"
    progress = transfer_progress()

    def bar(name: str, total: int | None) -> Callable[[int], None]:
        task = progress.add_task(f"downloading {name}", total=total)
        return lambda n: progress.advance(task, n)

    with progress:
        path = api.download(f"/api/projects/{project_id}/{kind}", out, f"{project_id}-{kind}", bar)
    console.print(str(path))


@friendly
def rm(
    ctx: typer.Context,
    project_id: str = typer.Argument(..., metavar="ID", help="The project."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Delete a project with everything it stored on the server.

    Needs the project's owner key, which the shell that submitted it remembers, or the admin
    password (--password).
    """
    api = api_for(ctx, server)
    api.password = password or ""
    project = api.project(project_id)
    if not yes:
        lost = "" if project.state == "done" else " All progress on this render will be lost."
        if not typer.confirm(f"Delete {project.title} ({project_id})?{lost}", default=False):
            raise typer.Exit(1)
    answer = api.delete(project_id, recall(project_id))
    console.print(f"deleted {project_id}, freed {size_text(answer.freed)}")


@friendly
def retry(
    ctx: typer.Context,
    project_id: str = typer.Argument(..., metavar="ID", help="The project in error."),
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Put a project that ended in error back in the queue.

    Needs the project's owner key (remembered by the shell that submitted it) or --password.
    """
    api = api_for(ctx, server)
    api.password = password or ""
    project = api.retry_project(project_id, recall(project_id))
    console.print(f"{project_id} is {project.state} again")
