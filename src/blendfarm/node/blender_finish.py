"""Finish tasks, inside Blender: loaded by blender_script.py (Blender 3.4 to 5.x).

A raw chunk (formats.chunk_kind decides; blender_output.raw_settings renders it) is rendered
without denoising and without compositing, as a multilayer OpenEXR (float32) holding the noisy
Combined pass, the denoising data (the view layer's `cycles.denoising_store_passes`) and every
pass the scene's compositor reads (they are enabled in the view layer, so the file has them).
The server stitches a frame's raw chunks exactly into its passes.

A finish denoises and composites that whole frame once. The scene's compositor is pointed at
the passes: every Render Layers node of the scene is muted and the sockets it fed are fed by
an Image node of the passes file instead (same pass names; Combined through a Denoise node
with the scene's own denoiser settings and its albedo and normal passes, when the scene
denoises). A scene without a compositor gets a tree of Image → Denoise → output. With no Render
Layers node at work Blender composites without rendering, and the result is written in the
scene's own output format. Every change is undone afterwards: a warm session goes on with
the scene as it was loaded.

Command (through blender_script.py's loop):
  {"op": "finish", "frame": 3, "passes": "/abs/passes.exr", "output": "/abs/final",
   "threads": 0}  -> the finished frame at "output", in the scene's format
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

_PREFILTER = {"NONE": "None", "FAST": "Fast", "ACCURATE": "Accurate"}
_QUALITY = {"HIGH": "High", "BALANCED": "Balanced", "FAST": "Fast"}
Undo = list[Callable[[], None]]


def loaded(scene: Any) -> dict[str, Any]:
    """The scene's denoising and compositing settings: as the file has them, since
    blender_script restores the scene (blender_output.Saved) before a finish."""
    cycles = getattr(scene, "cycles", None)
    return {
        "denoise": bool(cycles and scene.render.engine == "CYCLES" and cycles.use_denoising),
        "prefilter": getattr(cycles, "denoising_prefilter", "ACCURATE"),
        "quality": getattr(cycles, "denoising_quality", "HIGH"),
        "input_passes": getattr(cycles, "denoising_input_passes", "RGB_ALBEDO_NORMAL"),
        "compositing": scene.render.use_compositing,
    }


def compositor_tree(scene: Any) -> Any:
    """The scene's compositing nodes, if it uses them (blender_script uses this one too)."""
    if hasattr(scene, "compositing_node_group"):  # Blender 5.0 on: a node group of its own
        return scene.compositing_node_group
    return scene.node_tree if scene.use_nodes else None


def use_threads(settings: Any, threads: int) -> None:
    """Render with `threads` threads (0: as many as the machine has), as `-t` would."""
    settings.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        settings.threads = threads


def _set(undo: Undo, target: Any, name: str, value: Any) -> None:
    """Set one property, remembering how to put it back."""
    old = getattr(target, name)
    setattr(target, name, value)
    undo.append(lambda: setattr(target, name, old))


def _menu(node: Any, socket: str, prop: str, value: str, enum: str) -> None:
    """Set a Denoise node option: an input socket in Blender 4.5 on, a property before."""
    if socket in node.inputs:
        node.inputs[socket].default_value = value
    elif hasattr(node, prop):
        setattr(node, prop, enum)


def _denoised(tree: Any, image: Any, combined: Any, settings: dict[str, Any]) -> Any:
    """`combined` through a Denoise node set as the scene's denoiser; its output."""
    node = tree.nodes.new("CompositorNodeDenoise")
    tree.links.new(combined, node.inputs["Image"])
    passes = str(settings["input_passes"])
    for name, wanted in (("Albedo", "ALBEDO"), ("Normal", "NORMAL")):
        source = image.outputs.get(f"Denoising {name}")
        if wanted in passes and source is not None:
            tree.links.new(source, node.inputs[name])
    prefilter = str(settings["prefilter"])
    _menu(node, "Prefilter", "prefilter", _PREFILTER.get(prefilter, "Accurate"), prefilter)
    quality = str(settings["quality"])
    _menu(node, "Quality", "quality", _QUALITY.get(quality, "High"), quality)
    if "HDR" in node.inputs:
        node.inputs["HDR"].default_value = True
    elif hasattr(node, "use_hdr"):
        node.use_hdr = True
    return node.outputs["Image"]


def _image_node(tree: Any, image: Any, layer: str, undo: Undo) -> Any:
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    if layer and hasattr(node, "layer"):
        try:
            node.layer = layer
        except TypeError:  # not a view layer of the file: its first one
            pass
    undo.append(lambda: tree.nodes.remove(node))
    return node


def _combined(node: Any) -> Any:
    return node.outputs.get("Combined") or node.outputs["Image"]


def _plain_tree(scene: Any, undo: Undo) -> Any:
    """A compositor for a scene that composites nothing: an output only (the caller feeds
    it); in Blender 3.x the scene's own tree, whose Render Layers nodes are muted."""
    import bpy

    if hasattr(scene, "compositing_node_group"):  # Blender 5.0 on: a node group
        tree = bpy.data.node_groups.new("blendfarm finish", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        tree.nodes.new("NodeGroupOutput")
        undo.append(lambda: bpy.data.node_groups.remove(tree))
        _set(undo, scene, "compositing_node_group", tree)
        return tree
    _set(undo, scene, "use_nodes", True)  # Blender 3.x: may make a default tree
    tree = scene.node_tree
    for node in tree.nodes:
        if node.type == "R_LAYERS" and not node.mute:
            _set(undo, node, "mute", True)
    if not any(n.type == "COMPOSITE" for n in tree.nodes):
        made = tree.nodes.new("CompositorNodeComposite")
        undo.append(lambda: tree.nodes.remove(made))
    return tree


def _output_socket(tree: Any) -> Any:
    for node in tree.nodes:
        if node.type in {"GROUP_OUTPUT", "COMPOSITE"} and node.inputs:
            return node.inputs[0]
    raise RuntimeError("the compositor has no output")


def _link(tree: Any, source: Any, target: Any, undo: Undo) -> None:
    """Feed `target` from `source`, remembering what fed it before."""
    old = [link.from_socket for link in target.links]
    tree.links.new(source, target)
    for before in old:
        undo.append(partial(tree.links.new, before, target))


def _frame_from_passes(
    tree: Any, image: Any, layer: str, undo: Undo, denoise: bool, settings: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """An Image node of the passes (view layer `layer`) and its Combined output, denoised
    as the scene asks: (image node, noisy combined, final combined)."""
    node = _image_node(tree, image, layer, undo)
    combined = _combined(node)
    if not denoise:
        return node, combined, combined
    final = _denoised(tree, node, combined, settings)
    undo.append(lambda: tree.nodes.remove(final.node))
    return node, combined, final


def point_at_passes(scene: Any, image: Any, undo: Undo) -> int:
    """Feed the scene's compositor from the passes `image` instead of a render; how many
    Render Layers nodes it had (a scene that composites nothing gets Image → Denoise →
    output)."""
    settings = loaded(scene)
    denoise = bool(settings["denoise"])
    tree = compositor_tree(scene) if settings["compositing"] else None
    if tree is None:
        tree = _plain_tree(scene, undo)
        node, _noisy, final = _frame_from_passes(
            tree, image, scene.view_layers[0].name, undo, denoise, settings
        )
        _link(tree, final, _output_socket(tree), undo)
        return 0
    layers = [
        n
        for n in tree.nodes
        if n.type == "R_LAYERS" and getattr(n, "scene", None) in (None, scene) and not n.mute
    ]
    for rl in layers:
        node, noisy, final = _frame_from_passes(tree, image, rl.layer, undo, denoise, settings)
        for link in [x for output in rl.outputs for x in output.links]:
            name = link.from_socket.name
            feed = {"Image": final, "Noisy Image": noisy}.get(name) or node.outputs.get(name)
            if feed is None:
                raise RuntimeError(f"the compositor reads the {name} pass; the raw chunks lack it")
            _link(tree, feed, link.to_socket, undo)
        _set(undo, rl, "mute", True)
    return len(layers)


def can_denoise() -> bool:
    """Whether this Blender's compositor has OpenImageDenoise (without it, a Denoise node
    passes its image through unchanged)."""
    try:
        import _cycles
    except ImportError:
        return False
    return bool(getattr(_cycles, "with_openimagedenoise", True))


def finish(scene: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    """Denoise and composite a whole frame from its passes; the answer of a finish."""
    import bpy

    if loaded(scene)["denoise"] and not can_denoise():
        raise RuntimeError(
            "this Blender is built without OpenImageDenoise and cannot denoise the frame"
        )
    settings = scene.render
    scene.frame_set(int(cmd["frame"]))
    settings.use_border = False
    settings.use_crop_to_border = False
    use_threads(settings, int(cmd.get("threads") or 0))
    undo: Undo = []
    image = bpy.data.images.load(str(cmd["passes"]), check_existing=False)
    undo.append(lambda: bpy.data.images.remove(image))
    try:
        _set(undo, settings, "use_compositing", True)
        read = point_at_passes(scene, image, undo)
        print(
            f"blendfarm: finishing frame {scene.frame_current} from its passes"
            f" ({read} render layer node(s) fed from them)",
            flush=True,
        )
        bpy.ops.render.render(write_still=False)
        output = str(cmd["output"])
        bpy.data.images["Render Result"].save_render(filepath=output, scene=scene)
    finally:
        for step in reversed(undo):
            step()
    return {"output": output, "kind": "final"}
