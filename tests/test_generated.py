"""Generated files are regenerated here and must match what is committed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from blendfarm.cli.manpages import commands, generate

ROOT = Path(__file__).resolve().parent.parent


def test_man_pages_and_cli_reference_are_up_to_date(tmp_path: Path) -> None:
    generate(tmp_path / "man", tmp_path / "cli.md")
    fresh = {p.name: p.read_text() for p in (tmp_path / "man").iterdir()}
    committed = {p.name: p.read_text() for p in (ROOT / "man").glob("*.1")}
    assert fresh == committed, "run `make man` and commit the result"
    assert (tmp_path / "cli.md").read_text() == (ROOT / "docs" / "cli.md").read_text()


def test_every_command_has_a_man_page() -> None:
    names = {c.path.replace(" ", "-") for c in commands()}
    assert {
        "blendfarm",
        "blendfarm-serve",
        "blendfarm-node",
        "blendfarm-submit",
        "blendfarm-status",
        "blendfarm-fetch",
        "blendfarm-rm",
        "blendfarm-retry",
        "blendfarm-purge",
        "blendfarm-passwd",
        "blendfarm-blender-upload",
    } <= names


def test_man_pages_are_well_formed_and_render_without_warnings() -> None:
    for page in sorted((ROOT / "man").glob("*.1")):
        text = page.read_text()
        assert text.startswith(".TH ") and ".SH NAME" in text and ".SH SYNOPSIS" in text
        if shutil.which("man"):  # `man -l` as a reader would run it, where man is installed
            out = subprocess.run(
                ["man", "-l", "--warnings", str(page)],
                capture_output=True,
                text=True,
                env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
                timeout=30,
            )
            assert out.returncode == 0 and "SYNOPSIS" in out.stdout, page
            assert out.stderr == "", (page, out.stderr)
