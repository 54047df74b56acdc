"""Man pages and the CLI reference, generated from the typer app so they never drift.

    python -m blendfarm.cli.manpages man docs/cli.md

writes `man/blendfarm.1`, one `man/blendfarm-COMMAND.1` per command, and the Markdown
reference. A test regenerates them and compares with what is committed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from .. import __version__
from .helptext import help_record
from .main import app

DATE = "2026-11-28"  # fixed, so regenerating gives identical files


@dataclass(frozen=True)
class Option:
    names: str  # "--tiles N"
    help: str  # as `--help` shows it, default included


@dataclass(frozen=True)
class Command:
    path: str  # "blendfarm submit", "blendfarm blender upload"
    summary: str
    help: str
    usage: str
    options: list[Option]


def _options(cmd: Any, ctx: Any) -> list[Option]:
    """Each parameter as `--help` shows it (the help option itself left out)."""
    out = []
    for param in cmd.get_params(ctx):
        record = help_record(param)
        if record and param.name != "help":
            out.append(Option(record[0], record[1]))
    return out


def commands() -> list[Command]:
    """Every command of the app, the group first."""
    root = typer.main.get_command(app)
    found: list[Command] = []

    def walk(cmd: Any, path: list[str], parent: Any) -> None:
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent)
        help_text = (cmd.help or "").strip()
        summary = cmd.get_short_help_str(limit=200)
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        found.append(Command(" ".join(path), summary, help_text, usage, _options(cmd, ctx)))
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name], ctx)

    walk(root, ["blendfarm"], None)
    return found


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("[bold]", "").replace("[/bold]", "")
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line.replace("-", "\\-"))
    return "\n".join(lines)


def man_page(cmd: Command, all_commands: list[Command]) -> str:
    """The troff source of one man page."""
    name = cmd.path.replace(" ", "-")
    out = [
        f'.TH "{name.upper()}" "1" "{DATE}" "blendfarm {__version__}" "blendfarm manual"',
        ".SH NAME",
        f"{_roff(name)} \\- {_roff(cmd.summary)}",
        ".SH SYNOPSIS",
        f".B {_roff(cmd.path)}",
        _roff(cmd.usage),
        ".SH DESCRIPTION",
        _roff(cmd.help),
    ]
    if cmd.options:
        out.append(".SH OPTIONS")
        for opt in cmd.options:
            out += [".TP", f"\\fB{_roff(opt.names)}\\fR", _roff(opt.help)]
    subs = [
        c
        for c in all_commands
        if c.path.startswith(cmd.path + " ") and c.path.count(" ") == cmd.path.count(" ") + 1
    ]
    if subs:
        out.append(".SH COMMANDS")
        for sub in subs:
            out.append(".TP")
            out.append(f"\\fB{_roff(sub.path.split()[-1])}\\fR")
            out.append(f"{_roff(sub.summary)} See \\fB{_roff(sub.path.replace(' ', '-'))}\\fR(1).")
    out += [
        ".SH SEE ALSO",
        ", ".join(
            f"\\fB{_roff(c.path.replace(' ', '-'))}\\fR(1)" for c in all_commands if c is not cmd
        ),
    ]
    return "\n".join(out) + "\n"


def reference(all_commands: list[Command]) -> str:
    """The CLI reference in Markdown."""
    out = [
        "# blendfarm command reference",
        "",
        "Generated from `blendfarm --help` by `python -m blendfarm.cli.manpages`; "
        "do not edit by hand.",
        "",
    ]
    for cmd in all_commands:
        out += [f"## {cmd.path}", "", f"`{cmd.path} {cmd.usage}`", "", cmd.help, ""]
        if cmd.options:
            out += ["| option | meaning |", "|---|---|"]
            for opt in cmd.options:
                cell = opt.help.replace("|", "\\|")
                out.append(f"| `{opt.names}` | {cell} |")
            out.append("")
    return "\n".join(out)


def generate(man_dir: Path, reference_path: Path | None = None) -> list[Path]:
    """Write every man page (and the reference); returns the files written."""
    man_dir.mkdir(parents=True, exist_ok=True)
    all_commands = commands()
    written = []
    for cmd in all_commands:
        path = man_dir / f"{cmd.path.replace(' ', '-')}.1"
        path.write_text(man_page(cmd, all_commands))
        written.append(path)
    if reference_path is not None:
        reference_path.write_text(reference(all_commands))
        written.append(reference_path)
    return written


if __name__ == "__main__":
    args = sys.argv[1:] or ["man", "docs/cli.md"]
    for written_path in generate(Path(args[0]), Path(args[1]) if len(args) > 1 else None):
        print(written_path)
