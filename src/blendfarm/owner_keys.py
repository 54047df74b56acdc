"""The owner keys a person's shell received for the projects it submitted.

Kept in the user's config dir (`$XDG_CONFIG_HOME/blendfarm/owner-keys.json`, mode 0600), so
`blendfarm rm` and `blendfarm retry` work from the shell that submitted, without a password.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import write_private_json

KEPT = 2000  # the most recent keys kept; older projects fall back to the admin password


def keys_file(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "blendfarm" / "owner-keys.json"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember(pid: str, key: str, path: Path | None = None) -> None:
    """Keep the owner key of project `pid` (best effort: a read-only home is no error)."""
    path = path or keys_file()
    keys = _read(path)
    keys.pop(pid, None)
    keys[pid] = key
    keys = dict(list(keys.items())[-KEPT:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_json(path, keys)
    except OSError:
        pass


def recall(pid: str, path: Path | None = None) -> str | None:
    """The owner key this user received for `pid`, if any."""
    return _read(path or keys_file()).get(pid)
