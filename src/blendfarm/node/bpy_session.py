"""A render session in a Python that has the `bpy` module (the official Blender on PyPI).

    python -m blendfarm.node.bpy_session [--threads N] [FILE] [-- --trust-scripts | --list-devices]

The node starts this in a child interpreter (the node itself never imports bpy). It does
what `blender -b [--disable-autoexec] FILE --python blender_script.py -- OPTIONS` does for
the Blender executable: keeps the file's Python from running on load (unless trusted), opens
FILE without its UI, then runs the very same blender_script.py, whose command loop answers on
stdout. Nothing here runs in the node's process.

`--threads N` is the executable's `-t N`: bpy has no such option, and sizes Blender's thread
pool (TBB's) from the CPUs the process may use when it is imported. So the import happens on N
CPUs and the process gets them all back right after: the pool has N threads, the OS still
places them on any CPU. Without it, a node rendering with one thread keeps a TBB worker busy
yielding on the other cores; on a kernel that groups each session's CPU time (autogroup),
two such nodes on one machine get half the render speed each.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCRIPT = Path(__file__).with_name("blender_script.py")


@contextmanager
def cpus_for_import(threads: int) -> Iterator[None]:
    """Inside: the process may use only `threads` of its CPUs (all of them for 0 or more
    than it has); after: all it had before."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads <= 0 or threads >= len(allowed):
        yield
        return
    os.sched_setaffinity(0, allowed[:threads])
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def main(argv: list[str]) -> int:
    threads = 0
    if argv[:1] == ["--threads"]:
        threads, argv = int(argv[1]), argv[2:]
    split = argv.index("--") if "--" in argv else len(argv)
    files, options = argv[:split], argv[split + 1 :]
    with cpus_for_import(threads):
        import bpy  # only here, in the child interpreter

    # bpy has no --disable-autoexec: the preference it sets is turned off before loading.
    bpy.context.preferences.filepaths.use_scripts_auto_execute = "--trust-scripts" in options
    if files:
        try:
            bpy.ops.wm.open_mainfile(filepath=files[0], load_ui=False)
        except Exception as exc:  # the session's reader turns this line into the failure
            traceback.print_exc()
            print(f"Error: cannot read {files[0]}: {exc}", flush=True)
            return 1
    sys.argv = [str(SCRIPT), "--", *options]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
