"""The server hands out one Blender; nodes fetch it, render with it, and switch when it changes."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from blendfarm.errors import BadInput, BlendfarmError
from blendfarm.node.blender_fetch import unpack_blender
from blendfarm.server.blender_shelf import check_tarball
from helpers import FarmProcesses, hide_bpy


def blender_tarball(out: Path, blender: str, folder: str, note: str) -> Path:
    """A Linux build laid out as blender.org ships it, holding this machine's real Blender."""
    with lzma.open(out, "wb", preset=0) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        tar.add(Path(blender).resolve(), arcname=f"{folder}/blender")
        info = tarfile.TarInfo(f"{folder}/readme.txt")
        data = note.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(predicate, timeout: float, what: str, farm: FarmProcesses):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{farm.logs()}")


@pytest.mark.e2e
@pytest.mark.slow
def test_nodes_render_with_the_servers_blender_and_switch_to_a_new_one(
    tmp_path: Path, blender: str, project_zip: Path
) -> None:
    first = blender_tarball(
        tmp_path / "blender-3.4.1-linux-x64.tar.xz", blender, "blender-3.4.1-linux-x64", "first"
    )
    second = blender_tarball(
        tmp_path / "blender-3.4.1-linux-x86_64.tar.xz",
        blender,
        "blender-3.4.1-linux-x86_64",
        "second",
    )
    farm = FarmProcesses(tmp_path, node_timeout=3)
    farm.start_server()
    try:
        # A node with no Blender anywhere (nor the bpy module) says so and waits.
        farm.env = hide_bpy(dict(farm.env, PATH="/nonexistent"), tmp_path / "no-bpy")
        farm.start_node("fresh")
        farm.env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        wait_for(
            lambda: "no Blender to render with" in farm.log("node-fresh"),
            60,
            "the node to say it has no Blender",
            farm,
        )
        pid = json.loads(
            farm.cli(
                "submit",
                str(project_zip),
                "--blend",
                "scene.blend",
                "--frame",
                "1",
                "--tiles",
                "2",
                "--json",
            ).stdout
        )["id"]
        assert farm.project(pid)["waiting"]

        farm.cli("blender", "upload", str(first), "--password", "test-admin-password")
        done = farm.wait_state(pid, {"done", "error"}, timeout=180)
        assert done["state"] == "done", done
        status = json.loads(farm.cli("blender", "status", "--json").stdout)
        assert status["sha256"] == sha256(first)
        assert status["nodes"]["fresh"] == {
            "version": "3.4.1",
            "sha256": sha256(first),
            "online": True,
        }
        assert "blender-3.4.1-linux-x64/blender" in farm.log("node-fresh")

        farm.cli("blender", "upload", str(second), "--password", "test-admin-password")
        wait_for(
            lambda: (
                json.loads(farm.cli("blender", "status", "--json").stdout)["nodes"]["fresh"][
                    "sha256"
                ]
                == sha256(second)
            ),
            60,
            "the node to switch",
            farm,
        )
        work = farm.root / "work-fresh" / "blender"
        assert [p.name for p in work.iterdir()] == [sha256(second)[:16]]
        pid2 = json.loads(
            farm.cli(
                "submit", str(project_zip), "--blend", "scene.blend", "--frame", "2", "--json"
            ).stdout
        )["id"]
        assert farm.wait_state(pid2, {"done", "error"}, timeout=180)["state"] == "done"
        assert "blender-3.4.1-linux-x86_64/blender" in farm.log("node-fresh")
    finally:
        farm.close()
        shutil.rmtree(tmp_path / "work-fresh", ignore_errors=True)


# -- tarballs a node could not unpack safely: refused by the server, survived by the node ------

FOLDER = "blender-4.2.0-linux-x64"


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if name.endswith("/blender") else 0o644
    return info, data


def tarball(path: Path, *extra: tuple) -> Path:
    """An official-looking Linux build (an executable, a library and its relative link),
    plus `extra` members."""
    members = [
        member(f"{FOLDER}/blender", data=b"#!/bin/sh\necho Blender 4.2.0\n"),
        member(f"{FOLDER}/lib/libcycles.so.1", data=b"\x7fELF"),
        member(f"{FOLDER}/lib/libcycles.so", tarfile.SYMTYPE, "libcycles.so.1"),
        *extra,
    ]
    with lzma.open(path, "wb", preset=0) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def test_an_official_looking_build_is_accepted_and_unpacked(tmp_path: Path) -> None:
    t = tarball(tmp_path / "blender-4.2.0-linux-x64.tar.xz")
    assert check_tarball(t) == f"{FOLDER}/blender"
    executable = unpack_blender(t, tmp_path / "work" / "abc")
    assert executable == tmp_path / "work" / "abc" / FOLDER / "blender"
    assert (executable.parent / "lib" / "libcycles.so").read_bytes() == b"\x7fELF"


EVIL = "/tmp/blendfarm-test-evil"  # an absolute member name; the node unpacks it inside


@pytest.mark.parametrize(
    ("extra", "message", "node_refuses"),
    [
        (
            [member(f"{FOLDER}/lib/passwd", tarfile.SYMTYPE, "/etc/passwd")],
            f"the archive's link '{FOLDER}/lib/passwd' points to the absolute path '/etc/passwd'",
            True,
        ),
        (
            [member(f"{FOLDER}/lib/up", tarfile.SYMTYPE, "../../../etc")],
            f"the archive's link '{FOLDER}/lib/up' points outside the archive ('../../../etc')",
            True,
        ),
        (
            [member(f"{FOLDER}/shadow", tarfile.LNKTYPE, "../etc/shadow")],
            f"the archive's hard link '{FOLDER}/shadow' points outside the archive "
            "('../etc/shadow')",
            True,
        ),
        (
            [
                member(f"{FOLDER}/lib/here", tarfile.SYMTYPE, "."),
                member(f"{FOLDER}/lib/out", tarfile.SYMTYPE, "here/../../.."),
            ],
            f"the archive's link '{FOLDER}/lib/out' points through the link '{FOLDER}/lib/here'",
            True,
        ),
        (
            [member(f"{FOLDER}/etc", tarfile.SYMTYPE, "lib"), member(f"{FOLDER}/etc/x", data=b"x")],
            f"the archive member '{FOLDER}/etc/x' goes through the link '{FOLDER}/etc'",
            False,  # the data filter lets it land in lib/, inside
        ),
        (
            [member(f"{FOLDER}/null", tarfile.CHRTYPE)],
            f"the archive member '{FOLDER}/null' is a device file or pipe",
            True,
        ),
        (
            [member(f"{FOLDER}/pipe", tarfile.FIFOTYPE)],
            f"the archive member '{FOLDER}/pipe' is a device file or pipe",
            True,
        ),
        (
            [member(EVIL, data=b"x")],
            f"the archive member '{EVIL}' has an absolute path",
            False,  # the data filter strips the leading '/'
        ),
        (
            [member(f"{FOLDER}/../../evil", data=b"x")],
            f"the archive member '{FOLDER}/../../evil' points outside the archive ('..')",
            True,
        ),
    ],
)
def test_unsafe_tarballs_are_refused_and_do_not_kill_a_node(
    tmp_path: Path, extra: list[tuple], message: str, node_refuses: bool
) -> None:
    t = tarball(tmp_path / "blender-4.2.0-linux-x64.tar.xz", *extra)
    with pytest.raises(BadInput) as refused:
        check_tarball(t)
    assert str(refused.value) == message
    # A node handed such a tarball anyway says so in one sentence and keeps nothing of it,
    # or unpacks it all inside its work dir; nothing lands anywhere else.
    work = tmp_path / "work"
    if node_refuses:
        with pytest.raises(BlendfarmError, match="^the server's Blender cannot be unpacked: "):
            unpack_blender(t, work / "abc")
        assert list(work.iterdir()) == []
    else:
        assert unpack_blender(t, work / "abc").is_relative_to(work / "abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == [t.name, "work"]
    assert not Path(EVIL).exists()


def test_a_damaged_tarball_does_not_kill_a_node(tmp_path: Path) -> None:
    t = tarball(tmp_path / "blender-4.2.0-linux-x64.tar.xz")
    t.write_bytes(t.read_bytes()[:-200])
    with pytest.raises(BadInput, match="^not a readable tar archive"):
        check_tarball(t)
    with pytest.raises(BlendfarmError, match="^the server's Blender cannot be unpacked: "):
        unpack_blender(t, tmp_path / "work" / "abc")
    assert list((tmp_path / "work").iterdir()) == []
