"""Project archives: checking an uploaded zip, unpacking it safely, zipping a folder.

An archive is refused whole (nothing unpacked) when any entry would land outside the target
(`..`, absolute paths, drive letters), is a link, appears twice, or when the archive is a
zip bomb (total size or compression ratio over the limits).
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import BadInput, TooLarge

BLEND_MAGIC = b"BLENDER"
BACKUP_SUFFIXES = (".blend1", ".blend2")


@dataclass(frozen=True)
class ZipSummary:
    names: list[str]  # normalised: forward slashes, no "." parts
    blends: list[str]
    unpacked: int
    entries: dict[str, str]  # normalised name -> the entry's name in the zip


def is_blend_file(path: Path) -> bool:
    """True when `path` starts like a .blend (plain, gzip or zstd compressed)."""
    with open(path, "rb") as fh:
        head = fh.read(7)
    return head == BLEND_MAGIC or head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd"


def is_zip_file(path: Path) -> bool:
    """True when `path` starts like a zip archive (the one test of "is this a zip")."""
    with open(path, "rb") as fh:
        return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def _check_name(name: str) -> str:
    if not name or "\x00" in name:
        raise BadInput("the zip holds an entry with an empty or invalid name")
    if "\\" in name:
        name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadInput(f"the zip entry {name!r} has an absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise BadInput(f"the zip entry {name!r} points outside the project ('..')")
    return "/".join(p for p in parts if p not in ("", "."))


def inspect_zip(path: Path, max_unpacked: int, max_ratio: float) -> ZipSummary:
    """Check an uploaded archive and list its files; BadInput/TooLarge when it is refused."""
    if not zipfile.is_zipfile(path):
        raise BadInput("the upload is not a zip archive (or a .blend file)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadInput(f"the zip archive is damaged: {exc}") from None
    seen: set[str] = set()
    names: list[str] = []
    entries: dict[str, str] = {}
    total = 0
    compressed = 0
    for info in infos:
        name = _check_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BadInput(f"the zip entry {info.filename!r} is a symbolic link")
        if info.is_dir():
            continue
        key = name.casefold()
        if key in seen:
            raise BadInput(f"the zip holds {info.filename!r} twice")
        seen.add(key)
        names.append(name)
        entries[name] = info.filename
        total += info.file_size
        compressed += info.compress_size
    if total > max_unpacked:
        raise TooLarge(f"the zip unpacks to {total} bytes, over the limit of {max_unpacked}")
    if total > 1024 * 1024 and total > max_ratio * max(compressed, 1):
        raise TooLarge(f"the zip's compression ratio is over {max_ratio:g} (a zip bomb?)")
    blends = sorted(n for n in names if n.lower().endswith(".blend"))
    if not blends:
        raise BadInput("the zip holds no .blend file")
    return ZipSummary(names=names, blends=blends, unpacked=total, entries=entries)


def choose_blend(summary: ZipSummary, requested: str | None) -> str:
    """The .blend to render: the one asked for, or the only one there is."""
    if requested:
        wanted = _check_name(requested)
        if not wanted.lower().endswith(".blend"):
            raise BadInput(f"{requested!r} is not a .blend file")
        if wanted not in summary.blends:
            raise BadInput(
                f"{requested!r} is not in the archive (it holds {', '.join(summary.blends)})"
            )
        return wanted
    if len(summary.blends) == 1:
        return summary.blends[0]
    raise BadInput(f"the zip holds several .blend files, choose one: {', '.join(summary.blends)}")


def safe_extract(archive: Path, dest: Path, max_unpacked: int) -> None:
    """Unpack a checked archive into `dest`, counting real bytes (headers can lie)."""
    dest = dest.resolve()
    written = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = _check_name(info.filename)
            if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
                continue
            target = (dest / name).resolve()
            if not target.is_relative_to(dest):
                raise BadInput(f"the zip entry {info.filename!r} points outside the project")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while block := src.read(1024 * 1024):
                    written += len(block)
                    if written > max_unpacked:
                        raise TooLarge("the zip unpacks to more than its headers say")
                    out.write(block)


def folder_files(folder: Path) -> list[Path]:
    """Files of a project folder to upload, without Blender's backup files."""
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(BACKUP_SUFFIXES) and "__pycache__" not in p.parts
    ]
    return files


def zip_files(
    entries: Iterable[tuple[Path, str]],
    out: Path,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write (file, name in zip) pairs to the zip `out`."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for path, name in entries:
            zf.write(path, arcname=name)
            if progress:
                progress(path.stat().st_size)


def zip_folder(folder: Path, out: Path, progress: Callable[[int], None] | None = None) -> Path:
    """Zip a project folder as the seed's users do by hand (backups left out); returns `out`."""
    zip_files(((p, p.relative_to(folder).as_posix()) for p in folder_files(folder)), out, progress)
    return out


def wrap_blend(blend: Path, out: Path, name: str) -> None:
    """A zip holding a single .blend, for uploads of a lone .blend file."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        zf.write(blend, arcname=_check_name(name))


def remove_tree(path: Path) -> None:
    """Delete a folder if it exists, ignoring files that vanished meanwhile."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def tree_size(path: Path) -> int:
    """Bytes used by the files below `path`."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total
