"""Values people type, read by one rule everywhere: frame ranges and yes/no.

Pure functions over strings; the server's form checks, the settings and the CLI all use them.
"""

from __future__ import annotations

import re

from .errors import BadInput
from .formats import FINISH_MODES

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def parse_bool(what: str, raw: str | bool) -> bool:
    """'yes'/'no', 'true'/'false', 'on'/'off', '1'/'0' (any case; empty is no) as a bool."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise BadInput(f"{what} must be true or false, not {str(raw)[:40]!r}")


def parse_frames(text: str) -> tuple[int, int]:
    """'A-B' (both inclusive, also 'A..B' or 'A:B') or 'N' as a frame range."""
    m = re.fullmatch(r"\s*(-?\d{1,9})\s*(?:(?:-|\.\.|:)\s*(-?\d{1,9})\s*)?", text)
    if not m:
        raise BadInput(f"frames must look like 1-250, not {text[:40]!r}")
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) is not None else start
    return start, end


def parse_finish(text: str) -> str:
    """When tiled frames are denoised and composited whole by a finish task: never, auto
    (when the scene denoises or composites; the default, also for '') or always."""
    mode = text.strip().lower() or "auto"
    if mode not in FINISH_MODES:
        raise BadInput(f"finish is never, auto or always, not {text[:40]!r}")
    return mode
