"""The Blender add-on shipped with blendfarm: its zip, and installing it into a Blender.

The add-on's source is the `blendfarm_blender` package next to this file; it runs inside
Blender's own Python (stdlib and bpy only) and reaches the farm by running the `blendfarm`
command (see blendfarm_blender/job.py) and urllib. The zip holds one folder,
`blendfarm_blender/`, with the add-on, a `blender_manifest.toml` (Blender 4.2 and later
install it as an extension) and a `settings.json` naming the command that runs this
blendfarm, so the add-on finds it wherever blendfarm is installed.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

from .. import __version__

MODULE = "blendfarm_blender"
SOURCE = Path(__file__).with_name(MODULE)
SOURCES = ("__init__.py", "farm.py", "job.py", "state.py", "operators.py", "ui.py")
EXTENSION_REPOSITORY = "user_default"
EXTENSION_SINCE = (4, 2)
ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # fixed: the same add-on always makes the same zip


def manifest(version: str = __version__) -> str:
    """The extension manifest (blender_manifest.toml) of the add-on."""
    return f"""schema_version = "1.0.0"

id = "{MODULE}"
version = "{version}"
name = "blendfarm"
tagline = "Submit the open .blend to a blendfarm render farm"
maintainer = "blendfarm developers"
type = "add-on"
tags = ["Render"]
blender_version_min = "4.2.0"
license = ["SPDX:MIT"]

[permissions]
network = "Talks to your blendfarm server on the local network"
files = "Packs the saved .blend and the files it uses for upload"
"""


def default_command() -> list[str]:
    """The command that runs this blendfarm: this Python with `-m blendfarm`."""
    return [sys.executable, "-m", "blendfarm"]


def build_zip(dest: Path, command: list[str] | None = None) -> Path:
    """Write the add-on's zip to `dest` (replacing it whole) and return it."""
    settings = {"command": command or default_command(), "version": __version__}
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in SOURCES:
            _add(zf, f"{MODULE}/{name}", (SOURCE / name).read_bytes())
        _add(zf, f"{MODULE}/blender_manifest.toml", manifest().encode())
        _add(zf, f"{MODULE}/settings.json", (json.dumps(settings, indent=2) + "\n").encode())
    os.replace(part, dest)
    return dest


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def zip_location() -> Path:
    """Where `blendfarm addon path` keeps the zip: the user's cache folder."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "blendfarm" / f"{MODULE}-{__version__}.zip"
