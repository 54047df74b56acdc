"""Runs inside Blender (3.4 to 5.x): a scene whose denoising and compositor reach across
chunk edges, for the finish tests and bench/seams.py.

blender -b --factory-startup --python make_finish_scene.py -- OUT [key=value ...]
Options: width, height, samples, seed, denoise (1), compositor (1: a blur and a glare node;
0: none), format (PNG, OPEN_EXR...), depth.
"""

import os
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1 :]
out = os.path.abspath(args[0])
opts = dict(a.split("=", 1) for a in args[1:])

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
render = scene.render
render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = int(opts.get("samples", 8))
scene.cycles.seed = int(opts.get("seed", 7))
scene.cycles.use_denoising = opts.get("denoise", "1") == "1"
scene.cycles.use_adaptive_sampling = False
scene.cycles.max_bounces = 3
render.resolution_x = int(opts.get("width", 101))
render.resolution_y = int(opts.get("height", 77))
render.resolution_percentage = 100
render.dither_intensity = 0.0
render.image_settings.file_format = opts.get("format", "PNG")
render.image_settings.color_mode = "RGBA"
render.image_settings.color_depth = opts.get("depth", "16")
scene.frame_start = scene.frame_end = 1
scene.world = bpy.data.worlds.new("World")
scene.world.color = (0.04, 0.04, 0.06)

bpy.ops.object.camera_add(location=(0, -6, 3.2), rotation=(1.1, 0, 0))
scene.camera = bpy.context.active_object
bpy.ops.object.light_add(type="POINT", location=(1.5, -1.5, 3))
bpy.context.active_object.data.energy = 300
bpy.ops.mesh.primitive_plane_add(size=8)
floor = bpy.data.materials.new("Floor")
floor.diffuse_color = (0.6, 0.6, 0.6, 1)
bpy.context.active_object.data.materials.append(floor)
for i, (x, color, glow) in enumerate(
    (
        (-1.6, (0.9, 0.2, 0.1, 1), 0.0),
        (0.0, (1.0, 0.8, 0.3, 1), 6.0),
        (1.6, (0.1, 0.3, 0.9, 1), 0.0),
    )
):
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.6, location=(x, 0.3 * i, 0.6))
    mat = bpy.data.materials.new(f"Ball{i}")
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = color
    emission = "Emission Color" if "Emission Color" in bsdf.inputs else "Emission"
    bsdf.inputs[emission].default_value = color
    if "Emission Strength" in bsdf.inputs:
        bsdf.inputs["Emission Strength"].default_value = glow
    bpy.context.active_object.data.materials.append(mat)


def compositor():
    """Render Layers → Blur → Glare → output, in either Blender's compositor."""
    if hasattr(scene, "compositing_node_group"):  # Blender 5.0 on
        tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        scene.compositing_node_group = tree
        output = tree.nodes.new("NodeGroupOutput").inputs[0]
        layers = tree.nodes.new("CompositorNodeRLayers")
    else:
        scene.use_nodes = True
        tree = scene.node_tree
        output = tree.nodes["Composite"].inputs["Image"]
        layers = tree.nodes["Render Layers"]
    blur = tree.nodes.new("CompositorNodeBlur")
    glare = tree.nodes.new("CompositorNodeGlare")
    if "Type" in glare.inputs:  # Blender 4.5 on: options are inputs
        blur.inputs["Size"].default_value = (5, 5)
        glare.inputs["Type"].default_value = "Fog Glow"
        glare.inputs["Threshold"].default_value = 0.8
    else:
        blur.size_x = blur.size_y = 5
        glare.glare_type = "FOG_GLOW"
        glare.threshold = 0.8
    tree.links.new(layers.outputs["Image"], blur.inputs["Image"])
    tree.links.new(blur.outputs["Image"], glare.inputs["Image"])
    tree.links.new(glare.outputs["Image"], output)


if opts.get("compositor", "1") == "1":
    compositor()
os.makedirs(os.path.dirname(out), exist_ok=True)
bpy.ops.wm.save_as_mainfile(filepath=out)
