"""How the CLI shows the farm: sizes, times and the status table."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.progress_bar import ProgressBar
from rich.table import Table

from .. import protocol as p
from ..timing import duration_text

STATE_STYLE = {
    "queued": "yellow",
    "rendering": "cyan",
    "compositing": "magenta",
    "done": "green",
    "error": "red",
    "paused": "blue",
    "cancelled": "dim",
}
NODE_STYLE = {
    "idle": "green",
    "rendering": "cyan",
    "offline": "dim",
    "disabled": "yellow",
    "resting": "blue",
}


def size_text(n: int | None) -> str:
    """Bytes as people read them: '512 B', '3.4 MiB'."""
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def when_text(iso: str | None) -> str:
    """'2026-11-28T05:26:40Z' as a short local time: '05:26' today, else 'Nov 28'."""
    if not iso:
        return ""
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).astimezone()
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M")
    return moment.strftime("%b %d")


def status_table(status: p.Status) -> Table:
    """The farm at a glance: every project with a progress bar, and the disk use."""
    disk = status.disk
    online = sum(1 for n in status.nodes if n.online)
    table = Table(
        title=f"blendfarm — {online} node(s) online, {status.throughput:.0f} chunks/hour",
        caption=f"disk: {size_text(disk.used)} used, {size_text(disk.free)} free of "
        f"{size_text(disk.total)}; projects use {size_text(disk.data)}",
    )
    table.add_column("ID", no_wrap=True, min_width=8)
    table.add_column("Title", min_width=10, ratio=1, overflow="fold")
    table.add_column("State", min_width=11)
    table.add_column("Progress", no_wrap=True)
    table.add_column("Prio", no_wrap=True, justify="right")
    table.add_column("ETA", no_wrap=True)
    table.add_column("Size", no_wrap=True, justify="right")
    table.add_column("Created", no_wrap=True)
    for pr in status.projects:
        total, done = pr.chunks_total, pr.chunks_done
        state = pr.state.value
        label = f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"
        if pr.blocklist:
            label += f"\n[yellow]blocked: {', '.join(pr.blocklist)}[/yellow]"
        if state == "error" and pr.error:
            label += f"\n[red]{pr.error.splitlines()[0][:60]}[/red]"
        if pr.waiting:
            label += f"\n[dim]{pr.waiting}[/dim]"
        progress = Table.grid(padding=(0, 1))
        progress.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=8),
            f"{done}/{total}" if total else "-",
        )
        table.add_row(
            pr.id,
            pr.title,
            label,
            progress,
            str(pr.priority),
            eta_text(pr),
            size_text(pr.size),
            when_text(pr.created),
        )
    return table


def eta_text(pr: p.Project) -> str:
    """'4 min – 6 min' while it renders and chunk times are known, else '-'."""
    if pr.eta_low is None or pr.eta_high is None or pr.chunks_done == pr.chunks_total:
        return "-"
    low, high = duration_text(pr.eta_low), duration_text(pr.eta_high)
    return low if low == high else f"{low} – {high}"


def node_devices(node: p.Node) -> str:
    """The node's render devices when it reports them, else '-'."""
    devices = getattr(node.info, "devices", None)
    if not devices:
        return "-"
    return ", ".join(str(getattr(d, "name", d)) for d in devices)


def nodes_table(nodes: list[p.Node]) -> Table:
    """Every node: state, Blender, devices, tags, current chunk, chunks done, last seen."""
    table = Table(title=f"{len(nodes)} node(s)")
    for column in ("Name", "State", "Blender", "Devices", "Tags", "Current", "Done", "Seen"):
        table.add_column(column, no_wrap=column != "Devices")
    for n in nodes:
        cur = n.current
        current = "-"
        if cur is not None:
            current = f"{cur.project} {cur.kind.value}"
            if cur.kind.value == "chunk":
                current = f"{cur.project} {cur.frame}:{cur.row}:{cur.col}"
        table.add_row(
            n.name,
            f"[{NODE_STYLE.get(n.state, 'white')}]{n.state}[/]",
            n.blender_version or "-",
            node_devices(n),
            ", ".join(n.info.tags) or "-",
            current,
            str(n.chunks_done),
            when_text(n.last_seen),
        )
    return table
