"""blendfarm for Blender: submit the open .blend to a blendfarm render farm.

Render Properties › blendfarm: the server (kept in the add-on's preferences, with "Test
connection"), title, frames, tiles and overscan, and Submit, which runs the `blendfarm`
command in the background to pack the saved file with everything it uses and upload it, a
progress bar in the status bar, then the project's progress and a button to the dashboard.

From a script, also in `blender -b`:
    bpy.ops.blendfarm.submit(server="http://farm:2254", title="Shot 3", frames="1-8",
                             tiles=2, overscan=4)
returns when the upload is done and prints the project's id (also left in
`bpy.context.window_manager.blendfarm_project`).

Installed by `blendfarm addon install` (an extension on Blender 4.2 and later, a legacy
add-on before), which also writes the command that runs blendfarm into settings.json here.
"""

bl_info = {
    "name": "blendfarm",
    "author": "blendfarm developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties › Render › blendfarm",
    "description": "Submit the open .blend to a blendfarm render farm",
    "category": "Render",
}


def register() -> None:
    from . import ui  # bpy only exists inside Blender; farm.py and job.py do without it

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
