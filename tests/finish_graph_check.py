"""Runs inside Blender 5 on a scene of make_finish_scene.py: rewires its compositor to read
a frame's passes (blender_finish.point_at_passes), reports the graph, undoes it, and does
the same for a scene without a compositor. Prints one line: GRAPH {json}."""

import importlib.util
import json
import os

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, os.pardir, "src", "blendfarm", "node", "blender_finish.py")
spec = importlib.util.spec_from_file_location("blender_finish", os.path.normpath(PATH))
finish = importlib.util.module_from_spec(spec)
spec.loader.exec_module(finish)

scene = bpy.context.scene
scene.cycles.denoising_prefilter = "FAST"
scene.cycles.denoising_quality = "BALANCED"


def graph(tree):
    """Every link of a tree as (from node type, socket, to node type, socket), sorted."""
    if tree is None:
        return None
    links = sorted(
        [ln.from_node.bl_idname, ln.from_socket.name, ln.to_node.bl_idname, ln.to_socket.name]
        for ln in tree.links
    )
    muted = sorted(n.bl_idname for n in tree.nodes if n.mute)
    return {"nodes": sorted(n.bl_idname for n in tree.nodes), "links": links, "muted": muted}


def feeder(socket):
    return socket.links[0].from_node.bl_label if socket.links else None


# Passes of the right kind, as a raw chunk would hold them (Blender writes them itself).
passes = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"passes-{os.getpid()}.exr")
scene.cycles.use_denoising = False
scene.render.use_compositing = False
scene.view_layers[0].cycles.denoising_store_passes = True
fmt = scene.render.image_settings
fmt.media_type = "MULTI_LAYER_IMAGE"
fmt.file_format = "OPEN_EXR_MULTILAYER"
bpy.ops.render.render()
bpy.data.images["Render Result"].save_render(filepath=passes, scene=scene)
scene.cycles.use_denoising = True
scene.render.use_compositing = True
scene.view_layers[0].cycles.denoising_store_passes = False

tree = scene.compositing_node_group
before = graph(tree)
image = bpy.data.images.load(passes)
undo = []
finish.point_at_passes(scene, image, undo)
layers = next(n for n in tree.nodes if n.type == "R_LAYERS")
blur = next(n for n in tree.nodes if n.type == "BLUR")
denoise = next(n for n in tree.nodes if n.type == "DENOISE")
rewired = {
    "render_layers_muted": layers.mute,
    "blur_fed_by": feeder(blur.inputs["Image"]),
    "denoise": {
        **{
            name: denoise.inputs[name].links[0].from_socket.name
            for name in ("Image", "Albedo", "Normal")
        },
        "Prefilter": denoise.inputs["Prefilter"].default_value,
        "Quality": denoise.inputs["Quality"].default_value,
        "HDR": denoise.inputs["HDR"].default_value,
    },
}
for step in reversed(undo):
    step()
after = graph(tree)

# A scene without a compositor: a tree of Image → Denoise → output, for the finish only.
scene.compositing_node_group = None
undo = []
finish.point_at_passes(scene, image, undo)
made = scene.compositing_node_group
output = next(n for n in made.nodes if n.type == "GROUP_OUTPUT")
plain = {"output_fed_by": feeder(output.inputs[0])}
for step in reversed(undo):
    step()
plain["after"] = graph(scene.compositing_node_group)
os.remove(passes)
print("GRAPH " + json.dumps({"before": before, "rewired": rewired, "after": after, "plain": plain}))
