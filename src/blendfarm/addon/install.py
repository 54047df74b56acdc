"""Installing the add-on into a Blender and enabling it, the way that Blender wants it.

Blender 4.2 and later install it as an extension (`blender --command extension install-file
-r user_default -e ZIP`); older ones as a legacy add-on (installed into the user's add-ons
folder, enabled, and the preferences saved so it stays enabled). Both go to the user's own
Blender folders, so BLENDER_USER_CONFIG / BLENDER_USER_SCRIPTS / BLENDER_USER_EXTENSIONS
choose where, as for Blender itself. Then a second Blender checks the operator is there.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import BlendfarmError
from . import EXTENSION_REPOSITORY, EXTENSION_SINCE, MODULE

TIMEOUT = 180

# Runs inside Blender (legacy add-ons): install the zip, enable it, keep it enabled.
LEGACY_SCRIPT = f"""
import sys
import bpy
zip_path = sys.argv[sys.argv.index("--") + 1]
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
bpy.ops.preferences.addon_enable(module="{MODULE}")
bpy.ops.wm.save_userpref()
"""

# Runs inside Blender: is the operator registered (the add-on enabled at start-up)?
CHECK_SCRIPT = """
import bpy
bpy.ops.blendfarm.submit.get_rna_type()
print("blendfarm add-on: enabled")
"""


@dataclass(frozen=True)
class Installed:
    blender_version: str
    extension: bool

    @property
    def module(self) -> str:
        """The add-on's module name in that Blender."""
        return f"bl_ext.{EXTENSION_REPOSITORY}.{MODULE}" if self.extension else MODULE


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def is_extension_blender(version: str) -> bool:
    """Whether that Blender installs add-ons as extensions (4.2 and later)."""
    return version_tuple(version)[:2] >= EXTENSION_SINCE


def install_command(blender: str, version: str, zip_path: Path) -> list[str]:
    """The command that installs and enables the add-on in that Blender."""
    if is_extension_blender(version):
        return [
            blender,
            "--command",
            "extension",
            "install-file",
            "-r",
            EXTENSION_REPOSITORY,
            "-e",
            str(zip_path),
        ]
    return [
        blender,
        "-b",
        "-noaudio",
        "--python-exit-code",
        "1",
        "--python-expr",
        LEGACY_SCRIPT,
        "--",
        str(zip_path),
    ]


def check_command(blender: str) -> list[str]:
    """The command that succeeds only when a fresh Blender has the add-on enabled."""
    return [
        blender,
        "-b",
        "-noaudio",
        "--python-exit-code",
        "1",
        "--python-expr",
        CHECK_SCRIPT,
    ]


def install(blender: str, version: str, zip_path: Path) -> Installed:
    """Install and enable the add-on; BlendfarmError with Blender's words when it fails."""
    _run(install_command(blender, version, zip_path), "install the add-on")
    _run(check_command(blender), "find the add-on enabled after installing it")
    return Installed(version, is_extension_blender(version))


def _run(command: list[str], what: str) -> str:
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlendfarmError(f"Blender could not {what}: {exc}") from None
    if proc.returncode != 0:
        said = [
            line.strip()
            for line in (proc.stdout + proc.stderr).splitlines()
            if re.search(r"error|exception|cannot|failed|invalid", line, re.I)
        ]
        detail = said[-1] if said else f"exit code {proc.returncode}"
        raise BlendfarmError(f"Blender could not {what}: {detail}")
    return proc.stdout
