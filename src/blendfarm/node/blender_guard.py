"""Runs inside Blender (loaded by blender_script.py): keeps a .blend's own Python from
running when the node does not trust scripts, and says in words what was not run.

Blender is started with --disable-autoexec, so text blocks and Python drivers do not run;
Freestyle's Python style modules are not covered by that and are turned off here.
"""

from collections.abc import Callable, Iterator
from typing import Any

import bpy


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def datablocks() -> Iterator[Any]:
    """Every data-block of the file (objects, materials, shape keys, ...) and the node trees
    embedded in them (a material's or world's nodes), each once."""
    seen = set()
    for attr in dir(bpy.data):
        try:
            collection = getattr(bpy.data, attr)
        except (AttributeError, RuntimeError):
            continue
        if not isinstance(collection, bpy.types.bpy_prop_collection):
            continue
        for block in collection:
            if not isinstance(block, bpy.types.ID):
                break
            for item in (block, getattr(block, "node_tree", None)):
                if isinstance(item, bpy.types.ID) and item.as_pointer() not in seen:
                    seen.add(item.as_pointer())
                    yield item


def python_drivers() -> int:
    """Drivers that need Python: scripted expressions too complex for Blender's own
    evaluator (simple ones such as `frame * 0.1` still run without Python)."""
    count = 0
    for block in datablocks():
        animation = getattr(block, "animation_data", None)
        for fcurve in animation.drivers if animation else ():
            driver = fcurve.driver
            if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                count += 1
    return count


def turn_off_freestyle_scripts() -> int:
    """Disable every Freestyle Python style module; how many would have run."""
    count = 0
    for scene in bpy.data.scenes:
        for layer in scene.view_layers:
            settings = getattr(layer, "freestyle_settings", None)
            if settings is None or settings.mode != "SCRIPT":
                continue
            for module in settings.modules:
                if module.use and module.script:
                    module.use = False
                    count += scene.render.use_freestyle and layer.use_freestyle
    return count


def block_scripts(print_error: Callable[[BaseException], None]) -> list[str]:
    """Keep the Python of the file from running; what was not run, in words. `print_error`
    reports a check that failed (the check is only a report)."""
    blocked = []
    try:
        drivers = python_drivers()
    except Exception as exc:  # only a report: --disable-autoexec keeps them from running anyway
        print_error(exc)
        drivers = 0
    if drivers:
        blocked.append(
            plural(drivers, "Python driver was", "Python drivers were") + " not evaluated"
        )
    texts = sum(1 for text in bpy.data.texts if text.use_module)
    if texts:
        blocked.append(
            plural(
                texts,
                "text block registered to run on load was",
                "text blocks registered to run on load were",
            )
            + " not run"
        )
    if turn_off_freestyle_scripts():
        blocked.append("Freestyle Python style modules were turned off")
    if not blocked and bpy.app.autoexec_fail:
        blocked.append(f"Blender did not run {bpy.app.autoexec_fail_message}")
    return blocked
