"""Project archives: checking an uploaded zip, unpacking it safely, zipping a folder.

An archive is refused whole (nothing unpacked) when any entry would land outside the target
(`..`, absolute paths, drive letters), is a link, appears twice, has a name a node's file system
cannot hold, is encrypted or compressed in a way Python cannot read, does not read back with
its checksum, when it holds too many entries, or when it is a zip bomb (total size or
compression ratio over the limits).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import BadInput, BlendfarmError, TooLarge
from .zipdirectory import count_entries

BLEND_MAGIC = b"BLENDER"
BACKUP_SUFFIXES = (".blend1", ".blend2")
DEFAULT_MAX_ENTRIES = 100_000
MAX_COMPONENT_BYTES = 255  # NAME_MAX of Linux file systems (ext4, xfs, btrfs)
MAX_NAME_BYTES = 3072  # leaves room under PATH_MAX (4096) for the node's work dir
BLOCK = 1024 * 1024
# Methods every Python blendfarm runs on reads (3.14's zstd is left out: a 3.11 node cannot).
READABLE_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
ENCRYPTED = 0x1 | 0x40  # traditional and strong encryption
PATCHED = 0x20  # "compressed patched data", which zipfile refuses
# What reading a damaged member can raise, from zipfile and the decompressors below it.
READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
)


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


def _check_entry(info: zipfile.ZipInfo) -> str:
    """The normalised name of an entry a node can unpack; BadInput naming it when it cannot."""
    name = _check_name(info.filename)
    label = repr(info.filename)
    if not name and not info.is_dir():
        raise BadInput(f"the zip entry {label} has no file name")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        shown = repr(info.filename[:60] + "...")
        raise BadInput(f"the zip entry {shown} has a path over {MAX_NAME_BYTES} bytes")
    for part in name.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise BadInput(
                f"the zip entry {label} has a name part over {MAX_COMPONENT_BYTES} bytes, "
                "more than file systems hold"
            )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadInput(f"the zip entry {label} is a symbolic link")
    if info.flag_bits & ENCRYPTED:
        raise BadInput(f"the zip entry {label} is encrypted (zip it again without a password)")
    if info.flag_bits & PATCHED:
        raise BadInput(f"the zip entry {label} is stored as a patch, which cannot be unpacked")
    if not info.is_dir() and info.compress_type not in READABLE_METHODS:
        raise BadInput(
            f"the zip entry {label} is compressed with method {info.compress_type}, "
            "which cannot be unpacked (zip it again with deflate)"
        )
    return name


class _Layout:
    """The files and folders an archive makes, to refuse names a file system cannot hold both
    of: the same name twice (ignoring case and Unicode normal form, as macOS and Windows do),
    or a file and a folder of the same name."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}

    @staticmethod
    def _key(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()

    def add(self, name: str, is_dir: bool, label: str) -> None:
        parts = name.split("/")
        folders = parts if is_dir else parts[:-1]
        for depth in range(1, len(folders) + 1):
            folder = "/".join(folders[:depth])
            key = self._key(folder)
            if key in self.files:
                raise BadInput(f"the zip holds both a file and a folder called {self.files[key]!r}")
            self.folders.setdefault(key, folder)
        if is_dir:
            return
        key = self._key(name)
        if key in self.files:
            raise BadInput(f"the zip holds {label!r} twice")
        if key in self.folders:
            raise BadInput(f"the zip holds both a file and a folder called {name!r}")
        self.files[key] = name


def _unreadable(label: str, exc: BaseException) -> BadInput:
    """The one sentence for a member whose data does not read back."""
    text = str(exc)
    if "CRC" in text:
        why = "its checksum does not match (a file copied only in part?)"
    elif isinstance(exc, EOFError) or "ended" in text or "truncated" in text.lower():
        why = "its data is cut short"
    else:
        why = f"its data cannot be read ({text.rstrip('.') or type(exc).__name__})"
    return BadInput(f"the zip entry {label!r} is damaged: {why}")


def _blocks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The data of one member, checked against its CRC; BadInput naming it when damaged."""
    try:
        with zf.open(info) as src:
            while block := src.read(BLOCK):
                yield block
    except READ_ERRORS as exc:
        raise _unreadable(info.filename, exc) from None


def inspect_zip(
    path: Path,
    max_unpacked: int,
    max_ratio: float,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    digests: list[tuple[str, str]] | None = None,
) -> ZipSummary:
    """Check an uploaded archive whole and list its files; BadInput/TooLarge when refused.

    Every member is read through (its CRC checked), so a zip accepted here unpacks on a node.
    `digests`, when given, gets each member's (name in the zip, sha256) from the same read
    (`content_hash.content_sha_of`): a big upload is read once, not once more to hash it.
    """
    try:
        with open(path, "rb") as fh:
            count_entries(fh, max_entries)
        with zipfile.ZipFile(path) as zf:
            summary = _check_listing(zf.infolist(), max_unpacked, max_ratio)
            _read_through(zf, max_unpacked, digests)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, struct.error) as exc:
        raise BadInput(f"the zip archive is damaged: {exc}") from None
    return summary


def _check_listing(infos: list[zipfile.ZipInfo], max_unpacked: int, max_ratio: float) -> ZipSummary:
    layout = _Layout()
    names: list[str] = []
    entries: dict[str, str] = {}
    total = 0
    compressed = 0
    for info in infos:
        name = _check_entry(info)
        layout.add(name, info.is_dir(), info.filename)
        if info.is_dir():
            continue
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


def _read_through(
    zf: zipfile.ZipFile, max_unpacked: int, digests: list[tuple[str, str]] | None
) -> None:
    """Read every member to its end, so zipfile checks its size and CRC (and hash it into
    `digests` when given)."""
    read = 0
    for info in zf.infolist():
        if info.is_dir():
            continue
        sha = None if digests is None else hashlib.sha256()
        for block in _blocks(zf, info):
            read += len(block)
            if read > max_unpacked:
                raise TooLarge("the zip unpacks to more than its headers say")
            if sha is not None:
                sha.update(block)
        if digests is not None and sha is not None:
            digests.append((info.filename, sha.hexdigest()))


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
    """Unpack a checked archive into `dest`, counting real bytes (headers can lie).

    Every failure is a BlendfarmError with one sentence (the caller removes `dest`).
    """
    dest = dest.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, struct.error) as exc:
        raise BadInput(f"the project archive cannot be opened: {exc}") from None
    with zf:
        layout = _Layout()
        written = 0
        for info in zf.infolist():
            name = _check_entry(info)
            layout.add(name, info.is_dir(), info.filename)
            if info.is_dir():
                continue
            target = (dest / name).resolve()
            if not target.is_relative_to(dest):
                raise BadInput(f"the zip entry {info.filename!r} points outside the project")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "xb")
            except OSError as exc:
                raise BlendfarmError(
                    f"cannot unpack {info.filename!r} here: {exc.strerror or exc}"
                ) from None
            with out:
                for block in _blocks(zf, info):
                    written += len(block)
                    if written > max_unpacked:
                        raise TooLarge("the zip unpacks to more than its headers say")
                    try:
                        out.write(block)
                    except OSError as exc:
                        raise BlendfarmError(
                            f"cannot unpack {info.filename!r} here: {exc.strerror or exc}"
                        ) from None


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
