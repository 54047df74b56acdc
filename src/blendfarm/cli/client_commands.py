"""Client commands: submit, status, fetch, rm, retry (main.py registers them)."""

from __future__ import annotations

import json
import re
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from ..archive import folder_files, inspect_zip, is_blend_file, zip_folder
from ..errors import BadInput
from ..parsing import parse_frames
from .context import (
    SERVER_OPTION,
    Api,
    ProgressReader,
    api_for,
    checked,
    console,
    err_console,
    friendly,
    transfer_progress,
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
        table.add_row(name, _size(size) if size else "")
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
    fields: dict[str, str] = {"tiles": str(tiles), "overscan": str(overscan)}
    if title:
        fields["title"] = title
    if frame is not None:
        fields["frame"] = str(frame)
    if frames:
        start, end = parse_frames(frames)
        if end < start:
            raise BadInput(f"--frames {frames}: the range ends before it starts")
        fields["frames"] = f"{start}-{end}"
    if check:
        _show_plan(path, blend, fields, as_json)
        return
    with tempfile.TemporaryDirectory(prefix="blendfarm-") as tmp:
        upload, chosen = _pack(path, blend, Path(tmp))
        if chosen:
            fields["blend"] = chosen
        size = upload.stat().st_size
        with transfer_progress() as progress, open(upload, "rb") as fh:
            task = progress.add_task(f"uploading {upload.name}", total=size)
            reader = ProgressReader(fh, progress, task)
            resp = api.client.post(
                "/api/projects",
                data=fields,
                files={"file": (upload.name, reader, "application/octet-stream")},  # type: ignore[dict-item]
                timeout=httpx.Timeout(None, connect=5),
            )
    project = checked(resp).json()
    if as_json:
        console.print_json(json.dumps(project))
        return
    console.print(f"submitted [bold]{project['title']}[/bold] as [cyan]{project['id']}[/cyan]")
    for warning in project.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {warning}")


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


STATE_STYLE = {
    "queued": "yellow",
    "rendering": "cyan",
    "compositing": "magenta",
    "done": "green",
    "error": "red",
}


def _when(iso: str | None) -> str:
    """'2026-11-28T05:26:40Z' as a short local time: '05:26' today, else 'Nov 28'."""
    if not iso:
        return ""
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).astimezone()
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M")
    return moment.strftime("%b %d")


def status_table(status: dict[str, Any]) -> Table:
    """The farm at a glance: every project with a progress bar, and the disk use."""
    disk = status.get("disk", {})
    online = sum(1 for n in status.get("nodes", []) if n.get("online"))
    table = Table(
        title=f"blendfarm — {online} node(s) online",
        caption=f"disk: {_size(disk.get('used'))} used, {_size(disk.get('free'))} free of "
        f"{_size(disk.get('total'))}; projects use {_size(disk.get('data'))}",
    )
    table.add_column("ID", no_wrap=True, min_width=8)
    table.add_column("Title", min_width=10, ratio=1, overflow="fold")
    table.add_column("State", min_width=11)
    table.add_column("Progress", no_wrap=True)
    table.add_column("Size", no_wrap=True, justify="right")
    table.add_column("Created", no_wrap=True)
    for p in status.get("projects", []):
        total, done = p["chunks_total"], p["chunks_done"]
        state = p["state"]
        label = f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"
        if p.get("blocklist"):
            label += f"\n[yellow]blocked: {', '.join(p['blocklist'])}[/yellow]"
        if state == "error" and p.get("error"):
            label += f"\n[red]{p['error'].splitlines()[0][:60]}[/red]"
        if p.get("waiting"):
            label += f"\n[dim]{p['waiting']}[/dim]"
        progress = Table.grid(padding=(0, 1))
        progress.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=8),
            f"{done}/{total}" if total else "-",
        )
        table.add_row(
            p["id"], p["title"], label, progress, _size(p["size"]), _when(p.get("created"))
        )
    return table


def _events(api: Api) -> Any:
    """Status snapshots from the server's event stream."""
    with api.client.stream("GET", "/api/events", timeout=httpx.Timeout(None, connect=5)) as resp:
        checked(resp)
        data: list[str] = []
        for line in resp.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                yield json.loads("\n".join(data))
                data = []


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
        project = checked(api.client.get(f"/api/projects/{project_id}")).json()
        if as_json:
            console.print_json(json.dumps(project))
            return
        snapshot = checked(api.client.get("/api/status")).json()
        snapshot["projects"] = [project]
        console.print(status_table(snapshot))
        for w in project.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {w}")
        return
    snapshot = checked(api.client.get("/api/status")).json()
    if as_json:
        console.print_json(json.dumps(snapshot["projects"]))
        return
    if not watch:
        console.print(status_table(snapshot))
        return
    with Live(status_table(snapshot), console=console, refresh_per_second=4) as live:
        while True:
            try:
                for snap in _events(api):
                    live.update(status_table(snap))
            except httpx.TransportError:
                time.sleep(2)  # the server went away: wait for it to come back


def _download(api: Api, url: str, out_dir: Path, fallback: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with api.client.stream("GET", url, timeout=httpx.Timeout(None, connect=5)) as resp:
        checked(resp)
        m = re.search(r'filename="?([^";]+)"?', resp.headers.get("content-disposition", ""))
        name = Path(m.group(1)).name if m else fallback
        dest = out_dir / name
        part = dest.with_name(f".{dest.name}.part")
        total = int(resp.headers.get("content-length", 0)) or None
        with transfer_progress() as progress, open(part, "wb") as fh:
            task = progress.add_task(f"downloading {name}", total=total)
            for block in resp.iter_bytes(1024 * 1024):
                fh.write(block)
                progress.advance(task, len(block))
    part.replace(dest)
    return dest


@friendly
def fetch(
    ctx: typer.Context,
    project_id: str = typer.Argument(..., metavar="ID", help="The project."),
    out: Path = typer.Option(Path("."), "--out", "-o", metavar="DIR", help="Folder to write into."),
    raw: bool = typer.Option(False, "--raw", help="The zip of raw chunks instead of the result."),
    server: str | None = SERVER_OPTION,
) -> None:
    """Download a finished project's result (PNG or mp4) or raw chunks."""
    api = api_for(ctx, server)
    kind = "raw" if raw else "result"
    path = _download(api, f"/api/projects/{project_id}/{kind}", out, f"{project_id}-{kind}")
    console.print(str(path))


@friendly
def rm(
    ctx: typer.Context,
    project_id: str = typer.Argument(..., metavar="ID", help="The project."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    server: str | None = SERVER_OPTION,
) -> None:
    """Delete a project with everything it stored on the server."""
    api = api_for(ctx, server)
    project = checked(api.client.get(f"/api/projects/{project_id}")).json()
    if not yes:
        lost = "" if project["state"] == "done" else " All progress on this render will be lost."
        if not typer.confirm(f"Delete {project['title']} ({project_id})?{lost}", default=False):
            raise typer.Exit(1)
    answer = checked(api.client.delete(f"/api/projects/{project_id}")).json()
    console.print(f"deleted {project_id}, freed {_size(answer['freed'])}")


@friendly
def retry(
    ctx: typer.Context,
    project_id: str = typer.Argument(..., metavar="ID", help="The project in error."),
    server: str | None = SERVER_OPTION,
) -> None:
    """Put a project that ended in error back in the queue."""
    api = api_for(ctx, server)
    project = checked(api.client.post(f"/api/projects/{project_id}/retry")).json()
    console.print(f"{project_id} is {project['state']} again")
