"""A node's name: given, or kept in its work dir, or a friendly new one."""

from __future__ import annotations

import random
import re
import socket
from pathlib import Path

NAME_FILE = "node-name"
ADJECTIVES = (
    "amber",
    "brave",
    "calm",
    "cosmic",
    "crisp",
    "daring",
    "eager",
    "gentle",
    "golden",
    "happy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "mellow",
    "nimble",
    "quiet",
    "rapid",
    "shiny",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "witty",
    "zesty",
)
ANIMALS = (
    "badger",
    "beaver",
    "bison",
    "crane",
    "dolphin",
    "falcon",
    "fox",
    "gecko",
    "heron",
    "ibis",
    "koala",
    "lemur",
    "lynx",
    "marten",
    "newt",
    "otter",
    "owl",
    "panda",
    "puffin",
    "quokka",
    "raven",
    "seal",
    "tapir",
    "walrus",
    "wombat",
    "yak",
)


def valid_name(name: str) -> bool:
    """Names are 1-64 letters, digits, '-', '_' or '.'."""
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name))


def friendly_name(rng: random.Random | None = None) -> str:
    """Something like 'swift-otter-tux' (host name last, so names say where they run)."""
    rng = rng or random.Random()
    host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0])[:20] or "node"
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{host}"


def node_name(work_dir: Path, given: str = "") -> str:
    """The node's name: `given` (and remembered), else the one in the work dir, else a new one."""
    path = work_dir / NAME_FILE
    if given:
        name = given.strip()
    elif path.exists():
        name = path.read_text().strip()
    else:
        name = friendly_name()
    if not valid_name(name):
        from ..errors import BadInput

        raise BadInput(f"{name!r} is not a valid node name (letters, digits, '-', '_', '.')")
    work_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text().strip() != name:
        path.write_text(name + "\n")
    return name
