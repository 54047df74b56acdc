"""Every setting of the server and the node, declared once as a dataclass field.

A field made with `setting(...)` carries its default, help text, environment variable,
command-line flag and whether it is a secret; from that one declaration come the frozen
dataclass, the `BLENDFARM_*` variables, the keys of `blendfarm.toml`, `--print-config` and the
options of `blendfarm serve` / `blendfarm node`. Values come, by precedence, from the command
line, the environment, the TOML file in the data/work dir, and the default; `build` records
where each value came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import BadInput
from .limits import Limits
from .parsing import parse_bool

CONFIG_FILE = "blendfarm.toml"
_META_KEY = "blendfarm.setting"


@dataclass(frozen=True)
class _Declaration:
    help: str
    env: str
    flags: tuple[str, ...]
    metavar: str
    secret: bool


def setting(
    default: Any,
    help: str,
    *,
    env: str = "",
    flags: tuple[str, ...] = (),
    metavar: str = "",
    secret: bool = False,
) -> Any:
    """A dataclass field that is a setting.

    `env` defaults to BLENDFARM_<NAME>, `flags` to --<name-with-dashes> (a bool may give
    "--on/--off"), `metavar` to N for numbers, DIR for paths and NAME for text.
    """
    declaration = _Declaration(help, env, flags, metavar, secret)
    return field(default=default, metadata={_META_KEY: declaration})


@dataclass(frozen=True)
class Setting:
    """One setting as declared, with the blanks filled in."""

    name: str
    type: type
    default: Any
    help: str
    env: str
    flags: tuple[str, ...]
    metavar: str
    secret: bool

    def shown_default(self) -> str:
        """The default as a person would type it ('' when there is none to show)."""
        if isinstance(self.default, Path) and not self.default.is_absolute():
            return f"./{self.default}"
        if self.type is bool:
            return "yes" if self.default else "no"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    def shown(self, value: Any) -> str:
        """A value for display: secrets are masked."""
        if self.secret and value:
            return "****"
        return str(value)


def _default_metavar(name: str, kind: type) -> str:
    if kind in (int, float):
        return "N"
    if kind is Path:
        return "DIR"
    return name.upper().replace("_", "-")


def declared(cls: type) -> tuple[Setting, ...]:
    """The settings of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        decl = f.metadata.get(_META_KEY)
        if decl is None:
            continue
        kind = hints[f.name]
        found.append(
            Setting(
                name=f.name,
                type=kind,
                default=f.default,
                help=decl.help,
                env=decl.env or f"BLENDFARM_{f.name.upper()}",
                flags=decl.flags or (f"--{f.name.replace('_', '-')}",),
                metavar="" if kind is bool else decl.metavar or _default_metavar(f.name, kind),
                secret=decl.secret,
            )
        )
    return tuple(found)


def _convert(item: Setting, raw: Any, source: str) -> Any:
    if item.type is bool:
        return parse_bool(f"{item.name} from {source}", raw)
    if item.type in (int, float) and isinstance(raw, bool):
        raw = str(raw)  # TOML true is no number
    try:
        return item.type(raw)
    except (TypeError, ValueError):
        raise BadInput(
            f"{item.name} from {source}: {raw!r} is not a {item.type.__name__}"
        ) from None


def _read_config(folder: str | Path, names: set[str]) -> tuple[dict[str, Any], str]:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return {}, ""
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in names:
            raise BadInput(f"{path}: unknown setting {key!r}")
        values[name] = value
    return values, str(path)


def resolve(
    cls: type, cli: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Values and their sources ('command line', 'env NAME', the file, 'default').

    `cli` holds the options given on the command line (None: not given). The TOML file is
    looked for in the dir named by the class's CONFIG_DIR setting (itself taken from the
    command line, the environment or its default).
    """
    env = os.environ if env is None else env
    items = declared(cls)
    by_name = {item.name: item for item in items}
    unknown = set(cli) - set(by_name)
    if unknown:
        raise TypeError(f"{cls.__name__} has no setting {sorted(unknown)[0]!r}")
    folder_item = by_name[cls.CONFIG_DIR]  # type: ignore[attr-defined]
    folder = cli.get(folder_item.name) or env.get(folder_item.env) or folder_item.default
    file_values, file_name = _read_config(folder, set(by_name))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for item in items:
        if cli.get(item.name) is not None:
            values[item.name] = _convert(item, cli[item.name], "the command line")
            sources[item.name] = "command line"
        elif env.get(item.env):
            values[item.name] = _convert(item, env[item.env], item.env)
            sources[item.name] = f"env {item.env}"
        elif item.name in file_values:
            values[item.name] = _convert(item, file_values[item.name], file_name)
            sources[item.name] = file_name
        else:
            values[item.name] = item.default
            sources[item.name] = "default"
    return values, sources


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; build one with `Settings.build` or directly in tests."""

    CONFIG_DIR: ClassVar[str] = "data"

    host: str = setting("0.0.0.0", "Address to listen on.", metavar="ADDR")
    api_port: int = setting(2254, "Port of the JSON API (nodes and dashboard).", metavar="PORT")
    ui_port: int = setting(8080, "Port of the web dashboard.", metavar="PORT")
    data: Path = setting(Path("./blendfarm-data"), "Data dir: database, projects, results.")
    node_timeout: float = setting(
        60.0,
        "Seconds without heartbeat before a node is offline and its chunk requeued.",
        metavar="SEC",
    )
    local_nodes: int = setting(0, "Nodes to run on the server machine too.")
    chunk_timeout: float = setting(
        3600.0, "Seconds one chunk may render before Blender is killed.", metavar="SEC"
    )
    disk_reserve: int = setting(
        2 * 1024**3, "Bytes that must stay free on the data disk after an upload.", metavar="BYTES"
    )
    max_upload: int = setting(20 * 1024**3, "Largest upload in bytes.", metavar="BYTES")
    max_unpacked: int = setting(
        50 * 1024**3, "Largest total uncompressed size of a project zip.", metavar="BYTES"
    )
    max_ratio: float = setting(200.0, "Largest compression ratio of a project zip (zip bombs).")
    max_entries: int = setting(100_000, "Most files and folders in a project zip.")
    max_tiles: int = setting(64, "Most chunks per side of a frame.")
    max_chunks: int = setting(
        250_000, "Most chunks in one project (frames x tiles x tiles), checked at submit."
    )
    max_side: int = setting(16_384, "Most pixels per side of a frame a project may render.")
    max_failures: int = setting(
        3, "Failures before a node is blocklisted for a project, or a chunk errors the project."
    )
    duplicates: bool = setting(
        True,
        "When the queue is empty, render a copy of a straggling chunk on an idle node (the "
        "first result wins, the other node is stopped).",
        flags=("--duplicates/--no-duplicates",),
    )
    ui_origin: str = setting(
        "",
        "One more origin the dashboard may be opened from (default: its port on the server's "
        "own names and addresses).",
        metavar="URL",
    )
    allowed_hosts: str = setting(
        "",
        "More names the server answers to, comma-separated (beyond its own names and addresses).",
        metavar="NAMES",
    )
    trusted_proxies: str = setting(
        "",
        "Addresses of reverse proxies whose X-Forwarded-For is believed (default: none).",
        metavar="ADDRS",
    )
    token: str = setting("", "Node token (default: generated once in the data dir).", secret=True)
    password: str = setting(
        "", "Admin password (default: generated once in the data dir).", secret=True
    )
    notify: str = setting(
        "",
        "Apprise URL told when any project is done or in error (ntfy://, mailto://, slack://, "
        "json://...); several are separated by spaces.",
        metavar="URL",
        secret=True,
    )
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, cli: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
        values, sources = resolve(cls, cli, env)
        return cls(**values, sources=sources)

    @property
    def limits(self) -> Limits:
        """What one project may ask of the farm."""
        return Limits(max_chunks=self.max_chunks, max_side=self.max_side)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class NodeSettings:
    """Everything a node needs to know."""

    CONFIG_DIR: ClassVar[str] = "work_dir"

    server: str = setting(
        "http://127.0.0.1:2254", "URL of the server's API.", flags=("--server", "-s"), metavar="URL"
    )
    name: str = setting(
        "", "Name of this node (default: kept in the work dir).", env="BLENDFARM_NODE_NAME"
    )
    work_dir: Path = setting(Path("./blendfarm-work"), "Work dir: name, project cache, Blender.")
    blender: str = setting(
        "",
        "Blender executable, or `bpy` for the bpy module of blendfarm[blender] (default: the "
        "server's, else `blender` on PATH, else bpy).",
        metavar="PATH",
    )
    device: str = setting(
        "auto",
        "Render on: auto (the best GPU backend Blender reports, else the CPU), cpu, cuda, "
        "optix, hip, oneapi or metal.",
        metavar="DEVICE",
    )
    gpus: str = setting(
        "all", "GPUs to render on, by number (e.g. 0,2): one render session each.", metavar="LIST"
    )
    cpu_slot: bool = setting(
        False, "Render on the CPU too, beside the GPUs (one more session).", flags=("--cpu-slot",)
    )
    threads: int = setting(0, "Render threads (0: all cores).")
    token: str = setting("", "Node token printed by the server on first start.", secret=True)
    chunk_timeout: float = setting(
        3600.0, "Seconds one chunk may render before Blender is killed.", metavar="SEC"
    )
    warm: bool = setting(
        True,
        "Keep Blender running between chunks of the same file (--cold: start it for every chunk).",
        flags=("--warm/--cold",),
    )
    trust_scripts: bool = setting(
        False,
        "Run the Python inside submitted .blend files (drivers, registered text blocks, "
        "Freestyle style modules) with this node's rights: only on a farm whose files you trust.",
        flags=("--trust-scripts",),
    )
    tags: str = setting(
        "",
        "Tags of this node, comma-separated (gpu,big-ram): projects that require a tag go only "
        "to nodes that have it.",
        metavar="TAGS",
    )
    schedule: str = setting(
        "",
        'Hours in which this node takes no new work, such as "mon-fri 09:00-18:00 off" '
        "(several rules separated by ';'; the server's clock): it finishes its chunk and rests.",
        metavar="RULES",
    )
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, cli: Mapping[str, Any], env: Mapping[str, str] | None = None) -> NodeSettings:
        values, sources = resolve(cls, cli, env)
        return cls(**values, sources=sources)
