"""How commands show their help: plain text as git or datasette print it.

Usage lines name arguments by their metavar (`PATH`, `[ID]`), options show a short
upper-case metavar (`--tiles N`, `-o, --out DIR`) and flags none (`--json`); paragraphs are
wrapped to the terminal. `help_record` is also what the man pages and docs/cli.md are made of.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup


def _join(opts: list[str]) -> str:
    return ", ".join(sorted(opts, key=lambda o: (o.startswith("--"), o)))


def argument_usage(param: Any) -> str:
    """An argument as the usage line shows it: PATH when required, [ID] when not."""
    name = param.metavar or param.name.upper()
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


def _default(param: Any) -> str:
    shown = param.show_default
    if isinstance(shown, str):
        return shown
    value = param.default
    if not shown or callable(value) or value is None or value is False or value in ("", ()):
        return ""
    return str(value)


def help_record(param: Any) -> tuple[str, str] | None:
    """(names, help) of one parameter for `--help`, the man pages and the reference."""
    if getattr(param, "hidden", False):
        return None
    help_text = " ".join((param.help or "").split())
    if param.param_type_name == "argument":
        return param.metavar or param.name.upper(), help_text
    names = _join(param.opts)
    if param.secondary_opts:
        names += " / " + _join(param.secondary_opts)
    if not param.is_flag and not getattr(param, "count", False):
        names += f" {param.metavar or param.name.upper()}"
    default = _default(param)
    if default:
        help_text = f"{help_text}  [default: {default}]".strip()
    return names, help_text


def usage_pieces(command: Any, ctx: Any) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name == "argument":
            pieces.append(argument_usage(param))
    return pieces


def format_params(command: Any, ctx: Any, formatter: Any) -> None:
    rows: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
    for param in command.get_params(ctx):
        record = help_record(param)
        if record is not None:
            rows.setdefault(param.param_type_name, []).append(record)
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        if rows[kind]:
            with formatter.section(title):
                formatter.write_dl(rows[kind])


class Command(TyperCommand):
    """A command whose help reads like git's."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return usage_pieces(self, ctx)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        format_params(self, ctx, formatter)


class Group(TyperGroup):
    """A group of commands whose help reads like git's."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*usage_pieces(self, ctx), self.subcommand_metavar]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)
