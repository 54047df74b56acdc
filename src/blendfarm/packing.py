"""Packing a .blend with everything it depends on, for upload (`blendfarm submit scene.blend`).

Uses blender-asset-tracer (BAT, the packer Flamenco uses) to find the dependencies (textures,
linked libraries, caches, sequences) and to write them into one zip whose paths are all
relative, so the project renders wherever the zip is unpacked.

Layout: the *project root* is the deepest folder holding the .blend and every dependency that
exists, so `/p/shots/scene.blend` linking `//../assets/lib.blend` packs as `shots/scene.blend`
and `assets/lib.blend` with the .blend untouched. When the only common folder is the filesystem
root (a texture in `/usr/share/...`), the root is the .blend's folder and BAT moves the outsiders
to `_outside_project/<their absolute path>`, rewriting the paths in the packed .blend files.
Absolute paths are always rewritten by BAT to relative ones.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from blender_asset_tracer import blendfile, trace
from blender_asset_tracer.blendfile.exceptions import BlendFileError
from blender_asset_tracer.pack import Aborted, progress
from blender_asset_tracer.pack.transfer import FileTransferError
from blender_asset_tracer.pack.zipped import ZipPacker

from .archive import is_blend_file
from .errors import BadInput

log = logging.getLogger(__name__)
# BAT logs warnings (missing files, no-op mode) but sets no handler: without this, Python's
# last-resort handler prints them to stderr. The application's own logging still gets them.
logging.getLogger("blender_asset_tracer").addHandler(logging.NullHandler())

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PackReport:
    """What a pack holds (or would hold, for a plan)."""

    blend: str
    """Path of the main .blend inside the zip (POSIX separators)."""
    files: list[str]
    """Every file in the zip, sorted."""
    missing: list[str]
    """Absolute paths of dependencies that do not exist on disk (not packed), sorted."""
    size: int
    """Total uncompressed bytes of `files`."""


class _Callback(progress.Callback):
    """Forwards BAT's per-file transfer events as byte counts to our progress function.

    BAT calls `transfer_file` from its transfer thread, but routes it through a thread-safe
    queue flushed by the thread running `execute()`, so `report` runs in the caller's thread.
    """

    def __init__(self, sizes: dict[Path, int], report: Progress | None) -> None:
        self.sizes = sizes
        self.report = report

    def transfer_file(self, src: Path, dst: PurePath) -> None:
        if self.report is not None:
            self.report(self.sizes.get(Path(src), 0))


class _Packer(ZipPacker):
    """BAT's ZipPacker that records what it sends and leaves out BAT's pack-info.txt.

    Recording in `_send_to_target` lets a no-op run (the plan) list exactly the files a real
    run writes, without printing them as BAT's no-op mode does.
    """

    def __init__(self, blend: Path, project: Path, target: Path, *, noop: bool) -> None:
        super().__init__(blend, project, str(target), noop=noop)
        self.sent: dict[PurePath, Path] = {}
        self.sizes: dict[Path, int] = {}

    def _send_to_target(self, asset_path: Path, target: PurePath, may_move: bool = False) -> None:
        src = Path(asset_path)
        self.sent[PurePath(target)] = src
        self.sizes[src] = src.stat().st_size
        if self.noop:
            self._file_count += 1
            return
        super()._send_to_target(asset_path, target, may_move=may_move)

    def _write_info_file(self) -> None:
        """No pack-info.txt: the server lists the .blend files of an upload itself."""


def _abspath(path: Path) -> Path:
    """Absolute and normalised (`..` removed) without resolving symlinks, as BAT does."""
    return Path(os.path.abspath(path))


def _check_blend(blend: Path) -> Path:
    name = blend.name
    try:
        if not blend.exists():
            raise BadInput(f"{name} does not exist")
        if not blend.is_file() or blend.suffix.lower() != ".blend" or not is_blend_file(blend):
            raise BadInput(f"{name} is not a .blend file")
    except OSError as exc:
        raise BadInput(f"cannot read {name}: {exc.strerror or exc}") from None
    return _abspath(blend)


def _project_root(blend: Path) -> Path:
    """The deepest folder holding `blend` and every dependency that exists (see module doc)."""
    folders = [blend.parent]
    for usage in trace.deps(blend):
        path = Path(usage.abspath)
        if path.exists() or (usage.is_sequence and path.parent.exists()):
            folders.append(_abspath(path.parent))
    try:
        common = Path(os.path.commonpath(folders))
    except ValueError:  # paths on different drives (Windows)
        return blend.parent
    if common == Path(common.anchor):
        return blend.parent
    return common


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _run(
    blend: Path,
    target: Path,
    *,
    noop: bool,
    out_name: str = "",
    report: Progress | None = None,
) -> tuple[str, dict[PurePath, Path], dict[Path, int], list[str]]:
    """Trace and pack (or only plan); returns the main .blend's name in the zip, the files
    sent (path in pack -> source), their sizes and the missing dependencies."""
    name = blend.name
    try:
        project = _project_root(blend)
        packer = _Packer(blend, project, target, noop=noop)
        try:
            packer.progress_cb = _Callback(packer.sizes, report)
            packer.strategise()
            packer.execute()
            main = PurePath(packer.output_path).relative_to(target).as_posix()
            missing = sorted(str(p) for p in packer.missing_files)
            return main, dict(packer.sent), dict(packer.sizes), missing
        finally:
            packer.close()
    except BadInput:
        raise
    except BlendFileError as exc:
        raise BadInput(f"cannot read {name}: {exc}") from None
    except FileTransferError as exc:  # BAT logs the cause; it tells which files it could not add
        first = f" (first: {exc.files_remaining[0]})" if exc.files_remaining else ""
        raise BadInput(f"cannot write {out_name}: {exc}{first}") from None
    except Aborted as exc:
        raise BadInput(f"packing {name} was aborted: {exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {name}: {_error_message(exc)}") from None
    except Exception as exc:  # BAT parses arbitrary binary data: any failure is the file's.
        log.debug("blender-asset-tracer failed on %s", blend, exc_info=True)
        raise BadInput(f"cannot pack {name}: {type(exc).__name__}: {exc}") from None
    finally:
        blendfile.close_all_cached()  # BAT caches open files: never reuse stale ones.


def plan_blend(blend: Path) -> PackReport:
    """What `pack_blend` would put into the zip and which dependencies are missing, without
    writing anything (for `blendfarm submit --check`). BadInput when `blend` is unusable."""
    source = _check_blend(blend)
    target = source.parent / f"{source.stem}.plan.zip"  # only used to compute names
    main, sent, sizes, missing = _run(source, target, noop=True)
    files = sorted(PurePath(dst).relative_to(target).as_posix() for dst in sent)
    size = sum(sizes.get(src, 0) for src in sent.values())
    return PackReport(blend=main, files=files, missing=missing, size=size)


def pack_blend(blend: Path, out_zip: Path, progress: Progress | None = None) -> PackReport:
    """Pack `blend` and everything it depends on into the zip `out_zip` (replaced if it exists).

    Every path in the zip is relative and the packed .blend files refer to their dependencies
    by relative paths, so the zip renders wherever it is unpacked. Missing dependencies are
    left out and listed in the report. `progress` receives the byte count of each file as it
    is added. The zip is written under a temporary name and renamed when complete.
    BadInput when `blend` is unusable or the zip cannot be written.
    """
    source = _check_blend(blend)
    out_zip = _abspath(out_zip)
    partial = out_zip.with_name(f".{out_zip.name}.part")
    try:
        with open(partial, "wb"):
            pass
    except OSError as exc:
        raise BadInput(f"cannot write {out_zip.name}: {_error_message(exc)}") from None
    try:
        main, _sent, _sizes, missing = _run(
            source, partial, noop=False, out_name=out_zip.name, report=progress
        )
        try:
            with zipfile.ZipFile(partial) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
        except (OSError, zipfile.BadZipFile) as exc:
            raise BadInput(f"cannot write {out_zip.name}: {_error_message(exc)}") from None
        os.replace(partial, out_zip)
    except OSError as exc:
        raise BadInput(f"cannot write {out_zip.name}: {_error_message(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)
    files = sorted(i.filename for i in infos)
    return PackReport(
        blend=main, files=files, missing=missing, size=sum(i.file_size for i in infos)
    )
