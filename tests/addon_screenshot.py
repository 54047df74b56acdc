"""Runs inside Blender's window (under Xvfb): drives the blendfarm panel as an artist would
and takes the README's screenshot of it.

blender FILE.blend --python addon_screenshot.py -- SHOT.png SERVER_URL

The big 3D view becomes a Properties editor on the Render tab, scrolled down to the
blendfarm panel. Test Connection and Submit (2×2 chunks of frame 1) run as from the panel,
the timer follows the project to its end, then the window is saved to SHOT.png. Last, an
unsaved edit: Submit then asks (a dialog) instead of sending. Lines starting with @@ tell
the test what the panel showed and where the editor is.
"""

import sys
import time

import bpy

ARGS = sys.argv[sys.argv.index("--") + 1 :]
SHOT, SERVER = ARGS[0], ARGS[1]
STARTED = time.monotonic()
LIMIT = 180
PHASES = ["properties", "submit", "follow", "scroll", "shoot", "unsaved", "quit"]
phase = {"now": PHASES[0]}


def addon_module(name):
    found = [m for key, m in sys.modules.items() if key.endswith("blendfarm_blender." + name)]
    return found[0]


def big_properties():
    areas = [a for a in bpy.context.screen.areas if a.type == "PROPERTIES"]
    return max(areas, key=lambda a: a.width * a.height)


def step():
    """One phase per call; the timer calls again after the returned seconds."""
    now = phase["now"]
    phase["now"] = PHASES[min(PHASES.index(now) + 1, len(PHASES) - 1)]
    state = addon_module("state").STATE
    if now == "properties":  # the context list fills in once the editor has been drawn
        view = [a for a in bpy.context.screen.areas if a.type == "VIEW_3D"][0]
        view.type = "PROPERTIES"
    elif now == "submit":
        big_properties().spaces.active.context = "RENDER"
        prefs = bpy.context.preferences.addons[addon_module("state").ADDON].preferences
        prefs.server = SERVER
        settings = bpy.context.scene.blendfarm
        settings.title, settings.frames, settings.frame = "Shot 010", "FRAME", 1
        settings.tiles, settings.overscan = 2, 4
        bpy.ops.blendfarm.test_connection()
        bpy.ops.blendfarm.submit(title="Shot 010", frames="1", tiles=2, overscan=4)
    elif now == "follow":
        busy = state.job is not None or state.polling or state.busy_threads
        if busy and time.monotonic() - STARTED < LIMIT:
            phase["now"] = "follow"
    elif now == "scroll":
        area = big_properties()
        region = [r for r in area.regions if r.type == "WINDOW"][0]
        with bpy.context.temp_override(area=area, region=region):
            for _ in range(10):
                bpy.ops.view2d.scroll_down(page=True)
    elif now == "shoot":
        area = big_properties()
        print(f"@@nodes {state.nodes_text}")
        print(f"@@project {state.project_text}")
        print(f"@@area {area.x} {area.y} {area.width} {area.height}")
        bpy.ops.screen.screenshot(filepath=SHOT)
    elif now == "unsaved":  # an edit the file does not have yet: Submit asks, sends nothing
        bpy.context.scene.render.resolution_x += 1
        bpy.ops.ed.undo_push(message="an edit")
        answer = bpy.ops.blendfarm.submit("INVOKE_DEFAULT", title="Unsaved")
        print(f"@@unsaved dirty={bpy.data.is_dirty} answer={sorted(answer)} job={state.job}")
    else:
        sys.stdout.flush()
        bpy.ops.wm.quit_blender()
        return None
    return 0.5


bpy.app.timers.register(step, first_interval=1.0)
