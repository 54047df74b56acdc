"""Runs inside Blender: the test scenes are made by the script that makes `blendfarm demo`'s
(src/blendfarm/demo/make_scene.py; its docstring lists the kinds and options).

blender -b --factory-startup --python make_scene.py -- KIND OUT [key=value ...]
"""

import os
import runpy

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, os.pardir, "src", "blendfarm", "demo", "make_scene.py")
runpy.run_path(os.path.normpath(SCRIPT), run_name="__main__")
