"""The JSON every case of `make bench` writes to bench/results/: when, on what, under which
load, with which settings, whether it worked, and its figures.

    {"case": "scaling", "ok": true, "error": null, "date": "...Z",
     "machine": {"cpu": ..., "cores": 2, "ram_gib": 23.5},
     "loadavg_before": [1.2, 0.9, 0.8], "loadavg_after": [...], "seconds": 201.4,
     "config": {...}, "figures": {...}}

A case that fails still writes its record, with `ok` false and `error` saying why; the
report then shows it as failed, never as a number.
"""

from __future__ import annotations

import json
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import loadavgs, machine


class Record:
    """One case's record; `save()` writes it (call it once, in a `finally`)."""

    def __init__(self, case: str, out: Path, config: dict[str, Any]):
        self.out = out
        self.began = time.monotonic()
        self.data: dict[str, Any] = {
            "case": case,
            "ok": False,
            "error": None,
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine(),
            "loadavg_before": loadavgs(),
            "config": config,
            "figures": {},
        }

    @property
    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = self.data["figures"]
        return figures

    def failed(self, exc: BaseException) -> None:
        """Record why the case stopped (its one-line message, the traceback's end too)."""
        message = str(exc).strip() or type(exc).__name__
        self.data["error"] = f"{type(exc).__name__}: {message}"[:2000]
        self.data["traceback"] = traceback.format_exc()[-3000:]

    def save(self, ok: bool) -> dict[str, Any]:
        self.data["ok"] = ok and self.data["error"] is None
        self.data["loadavg_after"] = loadavgs()
        self.data["seconds"] = round(time.monotonic() - self.began, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=2) + "\n")
        return self.data
