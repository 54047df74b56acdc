"""Runs inside Blender: a tiny scene carrying every kind of Python a .blend can run by itself.

blender -b --factory-startup --python make_scripted_scene.py -- OUT MARKERS

Each piece writes a marker file into the folder MARKERS when it runs, so a test can tell
which of them ran:
  text       a text block registered to run when the file is loaded (`use_module`)
  driver     a driver whose expression needs Python (a simple one, `frame * 0.1`, is added
             too: Blender evaluates those without Python)
  freestyle  a Freestyle style module (Freestyle in Python scripting mode)
Building the file runs none of them (--factory-startup does not auto-run scripts).
"""

import os
import sys

import bpy

out, markers = (os.path.abspath(a) for a in sys.argv[sys.argv.index("--") + 1 :][:2])


def writes_marker(kind):
    path = os.path.join(markers, kind)
    return f"__import__('pathlib').Path({path!r}).write_text({kind!r})"


bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.render.resolution_x = 32
scene.render.resolution_y = 24
scene.frame_start = scene.frame_end = 1
bpy.ops.object.camera_add(location=(0, -6, 3), rotation=(1.1, 0, 0))
scene.camera = bpy.context.active_object
bpy.ops.mesh.primitive_cube_add()
cube = bpy.context.active_object

text = bpy.data.texts.new("autorun.py")
text.write(writes_marker("text") + "\n")
text.use_module = True

python_driver = cube.driver_add("location", 2).driver
python_driver.type = "SCRIPTED"
python_driver.expression = writes_marker("driver") + " and 0"
simple_driver = cube.driver_add("location", 0).driver
simple_driver.type = "SCRIPTED"
simple_driver.expression = "frame * 0.1"

style = bpy.data.texts.new("style.py")
style.write(
    writes_marker("freestyle")
    + "\n"
    + "from freestyle.chainingiterators import ChainSilhouetteIterator\n"
    + "from freestyle.predicates import NotUP1D, QuantitativeInvisibilityUP1D, TrueUP1D\n"
    + "from freestyle.shaders import ConstantThicknessShader\n"
    + "from freestyle.types import Operators\n"
    + "Operators.select(QuantitativeInvisibilityUP1D(0))\n"
    + "Operators.bidirectional_chain(ChainSilhouetteIterator(),"
    + " NotUP1D(QuantitativeInvisibilityUP1D(0)))\n"
    + "Operators.create(TrueUP1D(), [ConstantThicknessShader(2)])\n"
)
scene.render.use_freestyle = True
layer = scene.view_layers[0]
layer.use_freestyle = True
layer.freestyle_settings.mode = "SCRIPT"
module = layer.freestyle_settings.modules.new()
module.script = style
module.use = True

bpy.ops.wm.save_as_mainfile(filepath=out)
