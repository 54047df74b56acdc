"""A render session in a Python that has the `bpy` module (the official Blender on PyPI).

    python -m blendfarm.node.bpy_session [FILE] [-- --trust-scripts | --list-devices]

The node starts this in a child interpreter (the node itself never imports bpy). It does
what `blender -b [--disable-autoexec] FILE --python blender_script.py -- OPTIONS` does for
the Blender executable: keeps the file's Python from running on load (unless trusted), opens
FILE without its UI, then runs the very same blender_script.py, whose command loop answers on
stdout. Nothing here runs in the node's process.
"""

from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path

SCRIPT = Path(__file__).with_name("blender_script.py")


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    files, options = argv[:split], argv[split + 1 :]
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
