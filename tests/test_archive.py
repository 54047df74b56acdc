from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from blendfarm.archive import choose_blend, inspect_zip, safe_extract, zip_folder
from blendfarm.errors import BadInput, TooLarge

BLEND = b"BLENDER-v304" + b"\0" * 100
LIMITS = {"max_unpacked": 10 * 1024**2, "max_ratio": 50.0}


def make_zip(path: Path, entries: list[tuple[str, bytes]], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_a_good_project_lists_its_blends(tmp_path: Path) -> None:
    z = make_zip(
        tmp_path / "p.zip",
        [("scene.blend", BLEND), ("lib/lib.blend", BLEND), ("textures/a.png", b"x")],
    )
    summary = inspect_zip(z, **LIMITS)
    assert summary.blends == ["lib/lib.blend", "scene.blend"]
    assert choose_blend(summary, "scene.blend") == "scene.blend"
    with pytest.raises(BadInput, match="several"):
        choose_blend(summary, None)
    with pytest.raises(BadInput, match="not in the archive"):
        choose_blend(summary, "other.blend")
    with pytest.raises(BadInput, match="not a .blend"):
        choose_blend(summary, "textures/a.png")


@pytest.mark.parametrize(
    ("entries", "link", "message"),
    [
        ([("../evil.blend", BLEND)], None, "outside"),
        ([("a/../../evil.blend", BLEND)], None, "outside"),
        ([("/etc/evil.blend", BLEND)], None, "absolute"),
        ([("C:/evil.blend", BLEND)], None, "absolute"),
        ([("C:\\evil.blend", BLEND)], None, "absolute"),
        ([("scene.blend", BLEND)], "textures/link.png", "symbolic link"),
        ([("scene.blend", BLEND), ("Scene.blend", BLEND)], None, "twice"),
        ([("readme.txt", b"hi")], None, "no .blend"),
    ],
)
def test_dangerous_archives_are_refused(
    tmp_path: Path, entries: list[tuple[str, bytes]], link: str | None, message: str
) -> None:
    z = make_zip(tmp_path / "bad.zip", entries, link)
    with pytest.raises(BadInput, match=message):
        inspect_zip(z, **LIMITS)


def test_zip_bombs_are_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", [("scene.blend", BLEND), ("zeros", b"\0" * 5 * 1024**2)])
    with pytest.raises(TooLarge, match="ratio"):
        inspect_zip(z, **LIMITS)
    with pytest.raises(TooLarge, match="unpacks"):
        inspect_zip(z, max_unpacked=1024**2, max_ratio=1e9)


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"hello")
    with pytest.raises(BadInput, match="not a zip"):
        inspect_zip(tmp_path / "x.zip", **LIMITS)


def test_extraction_stays_inside_and_counts_real_bytes(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "p.zip", [("scene.blend", BLEND), ("a/b/c.txt", b"abc")])
    safe_extract(z, tmp_path / "out", 10_000)
    assert (tmp_path / "out" / "a" / "b" / "c.txt").read_bytes() == b"abc"
    with pytest.raises(TooLarge):
        safe_extract(z, tmp_path / "out2", 10)
    evil = make_zip(tmp_path / "evil.zip", [("../../escape.txt", b"x")])
    with pytest.raises(BadInput):
        safe_extract(evil, tmp_path / "out3", 10_000)
    assert not (tmp_path / "escape.txt").exists()


def test_zipping_a_folder_leaves_backups_out(tmp_path: Path) -> None:
    (tmp_path / "p" / "tex").mkdir(parents=True)
    (tmp_path / "p" / "scene.blend").write_bytes(BLEND)
    (tmp_path / "p" / "scene.blend1").write_bytes(BLEND)
    (tmp_path / "p" / "tex" / "t.png").write_bytes(b"x")
    zip_folder(tmp_path / "p", tmp_path / "p.zip")
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:
        assert sorted(zf.namelist()) == ["scene.blend", "tex/t.png"]
