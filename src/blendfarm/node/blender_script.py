"""Runs inside Blender (`blender -b FILE --python blender_script.py`): a render session.

It reads one JSON command per line on stdin and answers each with one line on stdout that
starts with MARKER. Blender keeps running between commands, so a node renders many chunks of
the same file without paying Blender's start-up and scene loading each time. Every setting a
chunk depends on is set again for every render, so nothing leaks from one chunk to the next.

Commands:
  {"op": "probe"}
  {"op": "render", "frame": 3, "border": [min_x, max_x, min_y, max_y] | null,
   "output": "/abs/path.png", "threads": 0, "size": [w, h]}
  {"op": "quit"}
"""

import json
import os
import sys
import traceback

import bpy

MARKER = "@@BLENDFARM@@"


def answer(payload):
    sys.stdout.write(MARKER + " " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def uses_compositor(scene):
    if not (scene.use_nodes and scene.render.use_compositing and scene.node_tree):
        return False
    plain = {"R_LAYERS", "COMPOSITE", "VIEWER", "REROUTE", "FRAME"}
    return any(node.type not in plain for node in scene.node_tree.nodes)


def missing_files():
    missing = []
    for image in bpy.data.images:
        if image.source in {"FILE", "SEQUENCE", "MOVIE"} and not image.packed_file:
            path = bpy.path.abspath(image.filepath, library=image.library)
            if image.filepath and not os.path.exists(path):
                missing.append(image.filepath)
    for library in bpy.data.libraries:
        if not os.path.exists(bpy.path.abspath(library.filepath)):
            missing.append(library.filepath)
    return missing


def probe():
    scene = bpy.context.scene
    render = scene.render
    cycles = getattr(scene, "cycles", None)
    return {
        "resolution_x": render.resolution_x,
        "resolution_y": render.resolution_y,
        "resolution_percentage": render.resolution_percentage,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_current": scene.frame_current,
        "fps": render.fps,
        "fps_base": render.fps_base,
        "engine": render.engine,
        "film_transparent": render.film_transparent,
        "compositor": uses_compositor(scene),
        "denoising": bool(cycles and render.engine == "CYCLES" and cycles.use_denoising),
        "color_depth": render.image_settings.color_depth,
        "file_version": ".".join(str(v) for v in bpy.data.version),
        "blender_version": bpy.app.version_string,
        "missing": missing_files(),
    }


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
    threads = int(cmd.get("threads") or 0)
    settings.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        settings.threads = threads
    fmt = settings.image_settings
    depth = "16" if fmt.color_depth in {"16", "32"} else "8"
    mode = fmt.color_mode if fmt.color_mode in {"BW", "RGB", "RGBA"} else "RGBA"
    fmt.file_format = "PNG"
    fmt.color_mode = mode
    fmt.color_depth = depth
    fmt.compression = 15
    if scene.render.engine == "CYCLES":
        # Cycles renders the whole border as one image; a chunk is small enough for that.
        scene.cycles.device = "CPU"
    bpy.ops.render.render(write_still=False)
    result = bpy.data.images["Render Result"]
    output = cmd["output"]
    result.save_render(filepath=output, scene=scene)
    if not os.path.exists(output):
        raise RuntimeError("Blender produced no image (see the log above)")
    return {"output": output}


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
            if op == "probe":
                answer({"ok": True, "probe": probe()})
            elif op == "render":
                answer({"ok": True, **render(cmd)})
            else:
                answer({"ok": False, "error": f"unknown command {op!r}"})
        except Exception as exc:  # report to the node, keep the session usable
            traceback.print_exc()
            sys.stdout.flush()
            answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


main()
