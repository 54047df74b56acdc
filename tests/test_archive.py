from __future__ import annotations

import hashlib
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from apphelpers import InProcessFarm
from blendfarm.archive import choose_blend, inspect_zip, safe_extract, zip_folder
from blendfarm.errors import BadInput, BlendfarmError, TooLarge

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


# -- archives that would kill a node: built for real, then damaged byte by byte ---------------

TEXTURE = bytes(range(256)) * 64


def stored_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """A zip whose members are stored as they are, so their bytes can be found and changed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def header_offsets(data: bytes, member: str) -> tuple[int, int]:
    """Where `member`'s local header and its central directory header start."""
    end = data.rindex(b"PK\x05\x06")
    (directory,) = struct.unpack_from("<L", data, end + 16)
    pos = directory
    while data[pos : pos + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
        (local,) = struct.unpack_from("<L", data, pos + 42)
        if data[pos + 46 : pos + 46 + name_len].decode() == member:
            return local, pos
        pos += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"{member} is not in the zip")


def damage(path: Path, member: str, how: str) -> Path:
    data = bytearray(path.read_bytes())
    local, central = header_offsets(bytes(data), member)
    if how == "crc":  # one byte of the member's data changed: a half-copied file
        name_len, extra_len = struct.unpack_from("<2H", data, local + 26)
        data[local + 30 + name_len + extra_len + 100] ^= 0xFF
    elif how == "encrypted":  # the "encrypted" flag in both headers
        data[local + 6] |= 0x01
        data[central + 8] |= 0x01
    elif how == "method":  # PPMd (98), a method Python's zipfile cannot read
        struct.pack_into("<H", data, local + 8, 98)
        struct.pack_into("<H", data, central + 10, 98)
    path.write_bytes(bytes(data))
    return path


def good_entries() -> list[tuple[str, bytes]]:
    return [("scene.blend", BLEND), ("textures/wood.png", TEXTURE)]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("crc", "the zip entry 'textures/wood.png' is damaged: its checksum does not match"),
        ("encrypted", "the zip entry 'textures/wood.png' is encrypted"),
        ("method", "the zip entry 'textures/wood.png' is compressed with method 98"),
    ],
)
def test_damaged_members_are_refused_at_submit_and_on_the_node(
    tmp_path: Path, how: str, message: str
) -> None:
    z = damage(stored_zip(tmp_path / "p.zip", good_entries()), "textures/wood.png", how)
    with pytest.raises(BadInput) as refused:
        inspect_zip(z, **LIMITS)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value) and str(refused.value).count(". ") == 0
    # A node given such a zip anyway says so in one sentence instead of dying on BadZipFile.
    with pytest.raises(BlendfarmError) as failed:
        safe_extract(z, tmp_path / "out", 10**9)
    assert str(failed.value).startswith(message)


def test_an_undamaged_stored_zip_is_accepted(tmp_path: Path) -> None:
    z = stored_zip(tmp_path / "p.zip", good_entries())
    assert inspect_zip(z, **LIMITS).names == ["scene.blend", "textures/wood.png"]
    safe_extract(z, tmp_path / "out", 10**9)
    assert (tmp_path / "out" / "textures" / "wood.png").read_bytes() == TEXTURE


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "a/b"], "both a file and a folder called 'a'"),
        (["a/b", "a"], "both a file and a folder called 'a'"),
        (["Tex", "tex/b.png"], "both a file and a folder called 'Tex'"),
        (["tex/", "tex"], "both a file and a folder called 'tex'"),
        (["caf\u00e9.png", "cafe\u0301.png"], "twice"),
        (["x" * 256 + ".png"], "has a name part over 255 bytes"),
        (["textures/" + "\u00e9" * 128], "has a name part over 255 bytes"),
        (["/".join(["d" * 200] * 16)], "has a path over 3072 bytes"),
    ],
)
def test_names_a_file_system_cannot_hold_are_refused(
    tmp_path: Path, names: list[str], message: str
) -> None:
    z = stored_zip(tmp_path / "p.zip", [("scene.blend", BLEND)] + [(n, b"x") for n in names])
    with pytest.raises(BadInput, match=message):
        inspect_zip(z, **LIMITS)
    with pytest.raises(BlendfarmError, match=message):
        safe_extract(z, tmp_path / "out", 10**9)


def test_a_name_with_a_nul_byte_is_refused(tmp_path: Path) -> None:
    z = stored_zip(tmp_path / "p.zip", [("scene.blend", BLEND), ("evil.blendXtxt", b"x")])
    z.write_bytes(z.read_bytes().replace(b"evil.blendXtxt", b"evil.blend\0txt"))
    with pytest.raises(BadInput, match="'evil.blend' has a NUL byte in its name"):
        inspect_zip(z, **LIMITS)


def many_entries(path: Path, count: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("scene.blend", BLEND)
        for i in range(count - 1):
            zf.writestr(f"f/{i}", b"")
    return path


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    z = many_entries(tmp_path / "p.zip", 11)
    assert inspect_zip(z, **LIMITS, max_entries=11).names[0] == "scene.blend"
    with pytest.raises(TooLarge, match="the zip holds 11 entries, over the limit of 10"):
        inspect_zip(z, **LIMITS, max_entries=10)


def test_a_zip_that_understates_its_entries_is_counted_all_the_same(tmp_path: Path) -> None:
    z = many_entries(tmp_path / "p.zip", 50)
    data = bytearray(z.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<2H", data, end + 8, 1, 1)  # "1 entry", where there are 50
    z.write_bytes(bytes(data))
    with pytest.raises(TooLarge, match="more entries than the limit of 10"):
        inspect_zip(z, **LIMITS, max_entries=10)


@pytest.fixture(scope="module")
def huge_listing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """70,000 empty entries: a zip64 table of contents that zipfile would hold in memory."""
    return many_entries(tmp_path_factory.mktemp("many") / "many.zip", 70_000)


@pytest.mark.slow
def test_an_over_cap_zip_is_refused_before_it_costs_memory(huge_listing: Path) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="the zip holds 70000 entries, over the limit of 1000"):
            inspect_zip(huge_listing, **LIMITS, max_entries=1000)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with zipfile.ZipFile(huge_listing) as zf:  # what accepting it would have cost
            assert len(zf.infolist()) == 70_000
        _, listing_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024**2 < listing_peak


# -- through the API: one sentence, nothing left behind ----------------------------------------


@pytest.mark.parametrize(
    ("how", "status", "message"),
    [
        ("crc", 400, "the zip entry 'textures/wood.png' is damaged"),
        ("encrypted", 400, "the zip entry 'textures/wood.png' is encrypted"),
        ("method", 400, "the zip entry 'textures/wood.png' is compressed with method 98"),
        ("clash", 400, "the zip holds both a file and a folder called 'textures'"),
        ("entries", 413, "the zip holds 4 entries, over the limit of 3"),
    ],
)
def test_a_refused_upload_answers_one_sentence_and_leaves_nothing(
    tmp_path: Path, how: str, status: int, message: str
) -> None:
    farm = InProcessFarm(tmp_path, max_entries=3)
    try:
        extra = {"clash": [("textures", b"a file")], "entries": [("a.txt", b""), ("b.txt", b"")]}
        z = stored_zip(tmp_path / "p.zip", good_entries() + extra.get(how, []))
        if how in {"crc", "encrypted", "method"}:
            damage(z, "textures/wood.png", how)
        resp = farm.submit(content=z.read_bytes())
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert error["message"].startswith(message)
        assert "\n" not in error["message"]
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
        assert list((tmp_path / "data" / "projects").iterdir()) == []
    finally:
        farm.client.close()
        farm.farm.close()


def test_a_valid_project_still_goes_through_unchanged(tmp_path: Path, project_zip: Path) -> None:
    farm = InProcessFarm(tmp_path)
    try:
        resp = farm.submit({"blend": "scene.blend"}, project_zip.read_bytes(), "project.zip")
        assert resp.status_code == 201, resp.text
        stored = farm.farm.data.archive(resp.json()["id"])
        digest = hashlib.sha256
        assert digest(stored.read_bytes()).digest() == digest(project_zip.read_bytes()).digest()
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
    finally:
        farm.client.close()
        farm.farm.close()
