"""Runs inside Blender (`blender -b FILE --python blender_script.py [-- --trust-scripts]`,
or the bpy module through bpy_session.py): a render session. Works with Blender 3.4 to 5.x.

It reads one JSON command per line on stdin and answers each with one line on stdout that
starts with MARKER. Blender keeps running between commands, so a node renders many chunks of
the same file without paying Blender's start-up and scene loading each time. Every setting a
chunk depends on is set again for every render, so nothing leaks from one chunk to the next.

Unless the node trusts scripts, Blender was started with --disable-autoexec (no registered
text blocks, no Python drivers), and this script turns off Freestyle's Python style modules,
which Blender runs at render time whatever --disable-autoexec says. The probe lists what was
not run (`scripts_blocked`) so the artist learns why a frame may differ.

The probe also checks what would stop every render of the scene (no active camera, a linked
library that is not there, an engine or a denoiser this Blender lacks), so the server can put
the project in error at once with one plain sentence instead of trying every chunk. What it
found is printed to Blender's output too, which the node keeps in its log.

A render that fails answers with Blender's own message; the traceback printed to the log
leaves out this script's frames, which say nothing about the scene.

Commands:
  {"op": "probe"}
  {"op": "render", "frame": 3, "border": [min_x, max_x, min_y, max_y] | null,
   "output": "/abs/path.png", "threads": 0, "size": [w, h], "tiles": 2, "finish": "auto",
   "device": {"backend": "CUDA", "index": 0, "id": "...", "name": "...", "fake": false} | null,
   "scene_device": false}
  {"op": "quit"}

A chunk's kind (png, exr, raw) and how it is written are blender_output.py's; the answer names
the file written (`<id>.png`, `<id>.exr`, `<id>.raw.exr`) and its kind. `device` pins Cycles
to one GPU (null: the CPU); `scene_device` keeps a scene's own `cycles.device = 'CPU'`.
With `-- --list-devices` (and no file) it prints the GPUs Cycles reports, and quits.
"""

import ctypes
import importlib.util
import json
import os
import sys
import traceback

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(  # its neighbour, loaded as this file is
    "blendfarm_output", os.path.join(HERE, "blender_output.py")
)
OUTPUT = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(OUTPUT)

MARKER = "@@BLENDFARM@@"
OPTIONS = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
TRUSTED = "--trust-scripts" in OPTIONS
FINISH_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_finish.py")
_spec = importlib.util.spec_from_file_location("blendfarm_finish", FINISH_PY)
FINISH = importlib.util.module_from_spec(_spec)  # raw chunks and finish tasks
_spec.loader.exec_module(FINISH)
_spec = importlib.util.spec_from_file_location(
    "blendfarm_guard", os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_guard.py")
)
GUARD = importlib.util.module_from_spec(_spec)  # keeps the file's Python from running
_spec.loader.exec_module(GUARD)


def answer(payload):
    sys.stdout.write(MARKER + " " + json.dumps(payload) + "\n")
    sys.stdout.flush()


compositor_tree = FINISH.compositor_tree  # the scene's compositing nodes, if it uses them


def uses_compositor(scene):
    tree = compositor_tree(scene)
    if not (scene.render.use_compositing and tree):
        return False
    plain = {"R_LAYERS", "COMPOSITE", "VIEWER", "REROUTE", "FRAME", "GROUP_INPUT", "GROUP_OUTPUT"}
    return any(node.type not in plain for node in tree.nodes)


def library_path(library):
    """The absolute path of a linked library (an indirect one is relative to its parent)."""
    return bpy.path.abspath(library.filepath, library=getattr(library, "parent", None))


def missing_libraries():
    """Linked libraries Blender could not open: their data is missing from every render."""
    return [
        library.filepath
        for library in bpy.data.libraries
        if getattr(library, "is_missing", False) or not os.path.exists(library_path(library))
    ]


def missing_files():
    missing = []
    for image in bpy.data.images:
        if image.source in {"FILE", "SEQUENCE", "MOVIE"} and not image.packed_file:
            path = bpy.path.abspath(image.filepath, library=image.library)
            if image.filepath and not os.path.exists(path):
                missing.append(image.filepath)
    return missing + missing_libraries()


def sequencer_renders(scene):
    """True when the scene's output comes from its video sequencer (which needs no camera)."""
    editor = scene.sequence_editor
    if not (scene.render.use_sequencer and editor):
        return False
    strips = getattr(editor, "strips_all", None) or getattr(editor, "sequences_all", ())
    return any(strip.type != "SOUND" for strip in strips)


def has_camera(scene):
    """Whether Blender can render the scene: an active camera, or sequencer output."""
    return scene.camera is not None or sequencer_renders(scene)


def stored_engine(scene):
    """The render engine the file asks for, even one this Blender lacks (None: unknown).

    When a file names an engine that is not registered (an add-on's engine, or one from a
    newer Blender), Blender keeps the name in the scene but `render.engine` reports its
    fallback instead, and the render quietly uses that. The name is read from the scene's
    render settings in memory: its offset there is found by setting known engines on a
    scratch scene and looking for their names, within the render settings only.
    """
    try:
        start = scene.render.as_pointer()
        later = [
            block.as_pointer()
            for block in (
                getattr(scene, name, None)
                for name in ("unit_settings", "safe_areas", "view_settings", "display", "eevee")
            )
            if block is not None and block.as_pointer() > start
        ]
        if not later:
            return None
        size = min(later) - start
        scratch = bpy.data.scenes.new("blendfarm probe")
        try:
            offsets = None
            for name in ("BLENDER_WORKBENCH", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "CYCLES"):
                try:
                    scratch.render.engine = name
                except TypeError:  # not an engine of this Blender
                    continue
                if scratch.render.engine != name:
                    continue
                data = ctypes.string_at(scratch.render.as_pointer(), size)
                wanted = name.encode() + b"\0"
                found = {i for i in range(size - len(wanted) + 1) if data.startswith(wanted, i)}
                offsets = found if offsets is None else offsets & found
        finally:
            bpy.data.scenes.remove(scratch)
        if not offsets or len(offsets) != 1:
            return None
        raw = ctypes.string_at(start + offsets.pop(), 32).split(b"\0", 1)[0]
        return raw.decode("utf-8", "replace") or None
    except Exception as exc:  # only a check: never let it stop the probe
        print_error(exc)
        return None


def denoiser_available(scene):
    """Whether this Blender can denoise the scene as it asks (None: not denoised by Cycles)."""
    cycles = getattr(scene, "cycles", None)
    if not (cycles and scene.render.engine == "CYCLES" and cycles.use_denoising):
        return None
    try:
        import _cycles
    except ImportError:
        return None
    # Nodes render on the CPU, where Cycles denoises with OpenImageDenoise.
    return bool(getattr(_cycles, "with_openimagedenoise", True))


def probe():
    scene = bpy.context.scene
    OUTPUT.saved(scene).restore(scene)  # as the file has it, whatever a chunk changed
    render = scene.render
    cycles = getattr(scene, "cycles", None)
    engine = stored_engine(scene) or render.engine
    result = {
        "resolution_x": render.resolution_x,
        "resolution_y": render.resolution_y,
        "resolution_percentage": render.resolution_percentage,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_current": AS_SAVED.get("frame_current", scene.frame_current),
        "fps": render.fps,
        "fps_base": render.fps_base,
        "engine": engine,
        "engine_available": engine == render.engine,
        "film_transparent": render.film_transparent,
        "compositor": uses_compositor(scene),
        "denoising": bool(cycles and render.engine == "CYCLES" and cycles.use_denoising),
        "denoiser_available": denoiser_available(scene),
        "camera": has_camera(scene),
        "color_depth": render.image_settings.color_depth,
        "output": OUTPUT.scene_output(scene),
        "file_version": ".".join(str(v) for v in bpy.data.version),
        "blender_version": bpy.app.version_string,
        "missing": missing_files(),
        "missing_libraries": missing_libraries(),
        "scripts_blocked": BLOCKED,
    }
    for note in probe_notes(scene, result):
        print(f"blendfarm probe: {note}")
    sys.stdout.flush()
    return result


def probe_notes(scene, result):
    """What the probe found that stops every render, for the node's log."""
    if not result["camera"]:
        yield f"scene {scene.name!r} has no active camera"
    for path in result["missing_libraries"]:
        yield f"linked library {path} cannot be opened"
    if not result["engine_available"]:
        yield (
            f"render engine {result['engine']} is not available,"
            f" Blender falls back to {scene.render.engine}"
        )
    if result["denoiser_available"] is False:
        yield "denoising is on but this Blender is built without OpenImageDenoise"


def render(cmd):
    scene = bpy.context.scene
    settings = scene.render
    scene.frame_set(int(cmd["frame"]))
    border = cmd.get("border")
    if border:
        settings.use_border = True
        settings.use_crop_to_border = True
        settings.border_min_x, settings.border_max_x = border[0], border[1]
        settings.border_min_y, settings.border_max_y = border[2], border[3]
    else:
        settings.use_border = False
        settings.use_crop_to_border = False
    FINISH.use_threads(settings, int(cmd.get("threads") or 0))
    kind = OUTPUT.prepare(scene, cmd, uses_compositor)
    # Cycles renders the whole border as one image; a chunk is small enough for that.
    device = use_device(scene, cmd.get("device"), bool(cmd.get("scene_device")))
    print(f"blendfarm: rendering frame {scene.frame_current} on {device}", flush=True)
    bpy.ops.render.render(write_still=False)
    output = OUTPUT.chunk_path(scene, cmd["output"], kind)
    OUTPUT.save(scene, output)
    if not os.path.exists(output):
        raise RuntimeError("Blender produced no image (see the log above)")
    return {"output": output, "kind": kind, "device": device}


def cycles_preferences():
    return bpy.context.preferences.addons["cycles"].preferences


def list_devices():
    """Every GPU Cycles can use, by backend (CUDA, OPTIX, HIP, ONEAPI, METAL), in its order."""
    prefs = cycles_preferences()
    found = []
    for backend, *_ in prefs.get_device_types(bpy.context):
        if backend == "NONE":
            continue
        gpus = [d for d in prefs.get_devices_for_type(backend) if d.type == backend]
        for index, device in enumerate(gpus):
            found.append({"backend": backend, "index": index, "id": device.id, "name": device.name})
    return found


def use_device(scene, device, scene_device):
    """Pin Cycles to `device` (one GPU; None: the CPU); the device rendering, in words."""
    if scene.render.engine != "CYCLES":
        return f"{scene.render.engine} (no device choice)"
    if scene_device and AS_SAVED.get("cycles_device", scene.cycles.device) == "CPU":
        return "CPU (the scene asks for it)"
    if not device:
        scene.cycles.device = "CPU"
        return "CPU"
    label = f"{device['backend']} {device['index']} ({device['name']})"
    if device.get("fake"):  # a test's stand-in for a GPU this machine does not have
        scene.cycles.device = "CPU"
        return label + " [fake device: rendered on the CPU]"
    prefs = cycles_preferences()
    prefs.compute_device_type = device["backend"]
    gpus = prefs.get_devices_for_type(device["backend"])
    for candidate in prefs.devices:
        candidate.use = False
    chosen = [d for d in gpus if d.type == device["backend"] and d.id == device["id"]]
    if not chosen:
        raise RuntimeError(f"the device {label} is gone")
    chosen[0].use = True
    scene.cycles.device = "GPU"
    return label


def error_text(exc):
    """One line for a failure: Blender's own words for what Blender refused (an operator's
    RuntimeError reads "Error: Cannot render, no camera"), the exception's name otherwise."""
    text = str(exc).strip()
    if isinstance(exc, RuntimeError) and text.startswith(("Error:", "Warning:")):
        return text.split(":", 1)[1].strip()
    return f"{type(exc).__name__}: {text}"


def print_error(exc):
    """The traceback of a failure, without this script's frames (they are ours, not the
    scene's): what is left is what Blender and the file's own code did."""
    here = os.path.abspath(__file__)
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if os.path.abspath(frame.filename) != here
    ]
    if frames:
        print("Traceback (most recent call last):")
        print("".join(traceback.format_list(frames)), end="")
    print("".join(traceback.format_exception_only(type(exc), exc)), end="")
    sys.stdout.flush()


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "quit":
                answer({"ok": True})
                break
            if SETUP_ERROR and op in {"probe", "render", "finish"}:
                answer({"ok": False, "error": SETUP_ERROR})
            elif op == "probe":
                answer({"ok": True, "probe": probe()})
            elif op == "render":
                answer({"ok": True, **render(cmd)})
            elif op == "finish":
                OUTPUT.saved(bpy.context.scene).restore(bpy.context.scene)  # as the file has it
                answer({"ok": True, **FINISH.finish(bpy.context.scene, cmd)})
            else:
                answer({"ok": False, "error": f"unknown command {op!r}"})
        except Exception as exc:  # report to the node, keep the session usable
            print_error(exc)
            answer({"ok": False, "error": error_text(exc)})


if "--list-devices" in OPTIONS:
    try:
        answer({"ok": True, "devices": list_devices()})
    except Exception as exc:
        answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    sys.exit(0)

# What renders change but the file's own value answers for: a warm session renders chunks of
# every project of the same content, and probes between them.
_cycles = getattr(bpy.context.scene, "cycles", None)
AS_SAVED = {"frame_current": bpy.context.scene.frame_current}
AS_SAVED.update({"cycles_device": _cycles.device} if _cycles is not None else {})
try:
    BLOCKED = [] if TRUSTED else GUARD.block_scripts(print_error)
    SETUP_ERROR = None
except Exception as exc:  # never render a file whose Python could not be kept from running
    print_error(exc)
    BLOCKED = []
    SETUP_ERROR = f"could not keep the file's Python from running: {type(exc).__name__}: {exc}"
main()
