"""Every knob of the server and the node, in one table each.

A knob has a name, a default, an environment variable and a help text. Values come, by
precedence, from the command line, the environment, a TOML file in the data/work dir
(`blendfarm.toml`), and the default; `resolve` records where each value came from so
`blendfarm serve --print-config` can show it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

CONFIG_FILE = "blendfarm.toml"


@dataclass(frozen=True)
class Knob:
    name: str
    default: Any
    env: str
    help: str


SERVER_KNOBS: tuple[Knob, ...] = (
    Knob("host", "0.0.0.0", "BLENDFARM_HOST", "Address to listen on."),
    Knob("api_port", 2254, "BLENDFARM_API_PORT", "Port of the JSON API (nodes and dashboard)."),
    Knob("ui_port", 8080, "BLENDFARM_UI_PORT", "Port of the web dashboard."),
    Knob("data", "./blendfarm-data", "BLENDFARM_DATA", "Data dir: database, projects, results."),
    Knob(
        "node_timeout",
        60.0,
        "BLENDFARM_NODE_TIMEOUT",
        "Seconds without heartbeat before a node is offline and its chunk requeued.",
    ),
    Knob("local_nodes", 0, "BLENDFARM_LOCAL_NODES", "Nodes to run on the server machine too."),
    Knob(
        "chunk_timeout",
        3600.0,
        "BLENDFARM_CHUNK_TIMEOUT",
        "Seconds one chunk may render before Blender is killed.",
    ),
    Knob(
        "disk_reserve",
        2 * 1024**3,
        "BLENDFARM_DISK_RESERVE",
        "Bytes that must stay free on the data disk after an upload.",
    ),
    Knob("max_upload", 20 * 1024**3, "BLENDFARM_MAX_UPLOAD", "Largest upload in bytes."),
    Knob(
        "max_unpacked",
        50 * 1024**3,
        "BLENDFARM_MAX_UNPACKED",
        "Largest total uncompressed size of a project zip.",
    ),
    Knob(
        "max_ratio",
        200.0,
        "BLENDFARM_MAX_RATIO",
        "Largest compression ratio of a project zip (zip bombs).",
    ),
    Knob(
        "max_entries",
        100_000,
        "BLENDFARM_MAX_ENTRIES",
        "Most files and folders in a project zip.",
    ),
    Knob("max_tiles", 64, "BLENDFARM_MAX_TILES", "Most chunks per side of a frame."),
    Knob(
        "max_failures",
        3,
        "BLENDFARM_MAX_FAILURES",
        "Failures before a node is blocklisted for a project, or a chunk errors the project.",
    ),
    Knob(
        "ui_origin",
        "",
        "BLENDFARM_UI_ORIGIN",
        "CORS origin of the dashboard (default: http://<host>:<ui-port>).",
    ),
    Knob("token", "", "BLENDFARM_TOKEN", "Node token (default: generated once in the data dir)."),
    Knob(
        "password",
        "",
        "BLENDFARM_PASSWORD",
        "Admin password (default: generated once in the data dir).",
    ),
)

NODE_KNOBS: tuple[Knob, ...] = (
    Knob("server", "http://127.0.0.1:2254", "BLENDFARM_SERVER", "URL of the server's API."),
    Knob("name", "", "BLENDFARM_NODE_NAME", "Name of this node (default: kept in the work dir)."),
    Knob(
        "work_dir",
        "./blendfarm-work",
        "BLENDFARM_WORK_DIR",
        "Work dir: name, project cache, Blender.",
    ),
    Knob(
        "blender",
        "",
        "BLENDFARM_BLENDER",
        "Blender executable (default: the server's, else `blender` on PATH).",
    ),
    Knob("threads", 0, "BLENDFARM_THREADS", "Render threads (0: all cores)."),
    Knob("token", "", "BLENDFARM_TOKEN", "Node token printed by the server on first start."),
    Knob(
        "chunk_timeout",
        3600.0,
        "BLENDFARM_CHUNK_TIMEOUT",
        "Seconds one chunk may render before Blender is killed.",
    ),
    Knob("warm", True, "BLENDFARM_WARM", "Keep Blender running between chunks of the same file."),
    Knob(
        "trust_scripts",
        False,
        "BLENDFARM_TRUST_SCRIPTS",
        "Run the Python inside submitted .blend files (drivers, registered text blocks, "
        "Freestyle style modules) with this node's rights.",
    ),
)


def _convert(knob: Knob, raw: Any, source: str) -> Any:
    kind = type(knob.default)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        return kind(raw)
    except (TypeError, ValueError):
        raise BadInput(f"{knob.name} from {source}: {raw!r} is not a {kind.__name__}") from None


def resolve(
    knobs: tuple[Knob, ...],
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_dir_knob: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Values and their sources ('command line', 'env NAME', 'FILE', 'default') for `knobs`.

    `cli` holds only the options actually given. The TOML file is looked for in the dir
    named by `config_dir_knob` (itself resolved from cli, env and default only).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    by_name = {k.name: k for k in knobs}
    file_values: dict[str, Any] = {}
    file_name = ""
    if config_dir_knob:
        knob = by_name[config_dir_knob]
        folder = cli.get(knob.name) or env.get(knob.env) or knob.default
        path = Path(folder) / CONFIG_FILE
        if path.is_file():
            try:
                raw = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise BadInput(f"{path}: not valid TOML ({exc})") from None
            file_name = str(path)
            for key, value in raw.items():
                name = key.replace("-", "_")
                if name not in by_name:
                    raise BadInput(f"{path}: unknown setting {key!r}")
                file_values[name] = value
    for knob in knobs:
        if cli.get(knob.name) is not None:
            values[knob.name] = _convert(knob, cli[knob.name], "the command line")
            sources[knob.name] = "command line"
        elif env.get(knob.env):
            values[knob.name] = _convert(knob, env[knob.env], knob.env)
            sources[knob.name] = f"env {knob.env}"
        elif knob.name in file_values:
            values[knob.name] = _convert(knob, file_values[knob.name], file_name)
            sources[knob.name] = file_name
        else:
            values[knob.name] = knob.default
            sources[knob.name] = "default"
    return values, sources


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; build one with `Settings.build` or directly in tests."""

    host: str = "0.0.0.0"
    api_port: int = 2254
    ui_port: int = 8080
    data: Path = Path("./blendfarm-data")
    node_timeout: float = 60.0
    local_nodes: int = 0
    chunk_timeout: float = 3600.0
    disk_reserve: int = 2 * 1024**3
    max_upload: int = 20 * 1024**3
    max_unpacked: int = 50 * 1024**3
    max_ratio: float = 200.0
    max_entries: int = 100_000
    max_tiles: int = 64
    max_failures: int = 3
    ui_origin: str = ""
    token: str = ""
    password: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, cli: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
        values, sources = resolve(SERVER_KNOBS, cli, env, config_dir_knob="data")
        values["data"] = Path(values["data"])
        return cls(**values, sources=sources)

    def cors_origins(self) -> tuple[list[str], str | None]:
        """Origins the API allows cross-origin: (exact origins, a pattern).

        `ui_origin` when set; otherwise the dashboard on its port under any name the server
        is reached by (people open it as http://<server-ip>:8080 from their own machines).
        """
        if self.ui_origin:
            return [self.ui_origin], None
        if self.host not in {"0.0.0.0", "::", ""}:
            return [f"http://{self.host}:{self.ui_port}"], None
        return [], rf"https?://(?:[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):{self.ui_port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class NodeSettings:
    """Everything a node needs to know."""

    server: str = "http://127.0.0.1:2254"
    name: str = ""
    work_dir: Path = Path("./blendfarm-work")
    blender: str = ""
    threads: int = 0
    token: str = ""
    chunk_timeout: float = 3600.0
    warm: bool = True
    trust_scripts: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, cli: Mapping[str, Any], env: Mapping[str, str] | None = None) -> NodeSettings:
        values, sources = resolve(NODE_KNOBS, cli, env, config_dir_knob="work_dir")
        values["work_dir"] = Path(values["work_dir"])
        return cls(**values, sources=sources)
