"""Runs inside Blender: builds the scenes of `blendfarm demo` and of the tests (no binary
fixtures in the repository).

blender -b --factory-startup --python make_scene.py -- KIND OUT [key=value ...]
KIND: library  -> a .blend holding a coloured cube called "LibCube"
      project  -> a scene with a textured plane, a cube linked from lib/lib.blend (relative),
                  a moving sphere, Cycles on the CPU, denoising off, few samples
Options of a project: width, height, percent, samples, denoise, transparent, depth, fps,
fps_base, start, end, step, library (another library path), compositor=1 (a glare node),
broken=1 (no camera: Blender cannot render it), engine=NAME (render with NAME; an engine
this Blender lacks is registered for the moment of saving, so the file names it),
compress=1|0 (save compressed or not; Blender's own choice when not given).
format=FILE_FORMAT (OPEN_EXR, OPEN_EXR_MULTILAYER, JPEG, TIFF...; with depth, mode, codec,
quality), view=TRANSFORM and look=LOOK (colour management), dither=0, passes=1 (Z, Normal and
the denoising data passes too).
"""

import os
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1 :]
kind, out = args[0], os.path.abspath(args[1])
opts = dict(a.split("=", 1) for a in args[2:])


def clear():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def material(name, color):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = color
    return mat


def library():
    clear()
    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(1.2, 0.4, 0.6))
    cube = bpy.context.active_object
    cube.name = "LibCube"
    cube.data.materials.append(material("LibRed", (0.9, 0.1, 0.05, 1)))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=out)


def texture_image(path):
    size = 16
    img = bpy.data.images.new("checker", width=size, height=size)
    pixels = []
    for y in range(size):
        for x in range(size):
            on = ((x // 4) + (y // 4)) % 2
            pixels += [0.1, 0.3 + 0.6 * on, 0.9 * on, 1.0]
    img.pixels = pixels
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def use_engine(scene, name):
    """Render with `name`; one Blender does not have is registered just to be named."""
    try:
        scene.render.engine = name
    except TypeError:
        engine = type("StandIn", (bpy.types.RenderEngine,), {"bl_idname": name, "bl_label": name})
        bpy.utils.register_class(engine)
        scene.render.engine = name


def output_options(scene):
    """The output format, colour management and passes the options ask for."""
    fmt = scene.render.image_settings
    if opts.get("format") == "OPEN_EXR_MULTILAYER" and hasattr(fmt, "media_type"):
        fmt.media_type = "MULTI_LAYER_IMAGE"  # Blender 5.0 on: the format of that medium
    if "format" in opts:
        fmt.file_format = opts["format"]
    for key, name in (("depth", "color_depth"), ("mode", "color_mode"), ("codec", "exr_codec")):
        if key in opts:
            setattr(fmt, name, opts[key])
    if "quality" in opts:
        fmt.quality = int(opts["quality"])
    if "view" in opts:
        scene.view_settings.view_transform = opts["view"]
    if "look" in opts:
        scene.view_settings.look = opts["look"]
    if "dither" in opts:
        scene.render.dither_intensity = float(opts["dither"])
    if opts.get("passes", "0") == "1":
        layer = scene.view_layers[0]
        layer.use_pass_z = True
        layer.use_pass_normal = True
        layer.cycles.denoising_store_passes = True


def project():
    clear()
    folder = os.path.dirname(out)
    scene = bpy.context.scene
    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(opts.get("samples", 4))
    scene.cycles.use_denoising = opts.get("denoise", "0") == "1"
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = 7
    scene.cycles.max_bounces = 2
    render.resolution_x = int(opts.get("width", 203))
    render.resolution_y = int(opts.get("height", 157))
    render.resolution_percentage = int(opts.get("percent", 100))
    render.film_transparent = opts.get("transparent", "0") == "1"
    render.image_settings.color_mode = "RGBA"
    if "format" not in opts:  # else set with the format (output_options)
        render.image_settings.color_depth = opts.get("depth", "8")
    render.fps = int(opts.get("fps", 24))
    render.fps_base = float(opts.get("fps_base", 1))
    scene.frame_start = int(opts.get("start", 1))
    scene.frame_end = int(opts.get("end", 4))
    scene.frame_step = int(opts.get("step", 1))
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.05, 0.05, 0.08)

    bpy.ops.object.camera_add(location=(0, -6, 3.2), rotation=(1.1, 0, 0))
    scene.camera = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(2, -2, 5))
    bpy.context.active_object.data.energy = 4

    bpy.ops.mesh.primitive_plane_add(size=6)
    plane = bpy.context.active_object
    tex_path = os.path.join(folder, "textures", "checker.png")
    texture_image(tex_path)
    mat = bpy.data.materials.new("Checker")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(tex_path)
    tex.interpolation = "Closest"
    mat.node_tree.links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    plane.data.materials.append(mat)

    lib_path = opts.get("library", os.path.join(folder, "lib", "lib.blend"))
    with bpy.data.libraries.load(lib_path, link=True, relative=True) as (src, dst):
        dst.objects = ["LibCube"]
    for obj in dst.objects:
        scene.collection.objects.link(obj)

    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.6, location=(-1.5, 0, 0.6))
    sphere = bpy.context.active_object
    sphere.data.materials.append(material("Blue", (0.1, 0.2, 0.9, 1)))
    for frame, x in ((scene.frame_start, -2.0), (scene.frame_end, 0.5)):
        sphere.location.x = x
        sphere.keyframe_insert("location", frame=frame)

    if opts.get("compositor", "0") == "1":
        scene.use_nodes = True
        tree = scene.node_tree
        glare = tree.nodes.new("CompositorNodeGlare")
        tree.links.new(tree.nodes["Render Layers"].outputs["Image"], glare.inputs["Image"])
        tree.links.new(glare.outputs["Image"], tree.nodes["Composite"].inputs["Image"])
    if "engine" in opts:
        use_engine(scene, opts["engine"])
    output_options(scene)
    if opts.get("broken", "0") == "1":
        # A scene that makes Blender fail: a camera-less scene cannot be rendered.
        scene.camera = None
        bpy.data.objects.remove(bpy.data.objects["Camera"])

    bpy.ops.file.make_paths_relative()
    compress = {"compress": opts["compress"] == "1"} if "compress" in opts else {}
    bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=True, **compress)


{"library": library, "project": project}[kind]()
