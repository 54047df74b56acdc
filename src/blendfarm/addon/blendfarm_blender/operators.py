"""The operators: submit (the panel's button and `bpy.ops.blendfarm.submit` in scripts),
cancel, test connection, open the dashboard. In `blender -b` (or with wait=True) submit
waits for the upload and prints the project's id; in the interface it returns at once and
the timer in state.py follows the upload.
"""

import os
import shlex

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import farm
from .job import SubmitJob
from .state import (
    STATE,
    apply_event,
    in_thread,
    missing_files,
    nodes_checked,
    preferences,
    start_timer,
)

MISSING_SHOWN = 8


class BLENDFARM_OT_submit(bpy.types.Operator):
    """Pack the saved .blend with everything it uses and send it to the farm"""

    bl_idname = "blendfarm.submit"
    bl_label = "Submit to blendfarm"
    bl_options = {"REGISTER"}

    server: StringProperty(
        name="Server", description="The farm's API (empty: the preferences' server)"
    )
    title: StringProperty(name="Title", description="The project's title (empty: the file's)")
    frames: StringProperty(
        name="Frames",
        description="Empty for the scene's frame range, N for one frame, A-B for an animation",
    )
    tiles: IntProperty(name="Tiles", default=1, min=1, max=64)
    overscan: IntProperty(name="Overscan", default=0, min=0, max=4096)
    priority: IntProperty(name="Priority", default=50, min=0, max=100)
    finish: EnumProperty(name="Finish", items=farm.FINISH_ITEMS, default="auto")
    wait: BoolProperty(
        name="Wait",
        description="Return only when the upload is done (always so in background mode)",
        default=False,
        options={"SKIP_SAVE"},
    )
    unsaved: EnumProperty(
        name="Unsaved changes",
        items=[
            ("SAVE", "Save, then submit", "Save the file, then send it"),
            ("SAVED", "Submit the saved file", "Send the file as last saved, without the changes"),
        ],
        default="SAVE",
        options={"SKIP_SAVE"},
    )
    asked: BoolProperty(options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        if not bpy.data.filepath:
            self.report({"ERROR"}, "Save the file first: blendfarm sends the saved .blend")
            return {"CANCELLED"}
        STATE.dialog_missing = missing_files()
        if bpy.data.is_dirty or STATE.dialog_missing:
            self.asked = True
            return context.window_manager.invoke_props_dialog(self, width=460)
        return self.execute(context)

    def draw(self, context):
        layout = self.layout
        if bpy.data.is_dirty:
            layout.label(text="This file has unsaved changes.", icon="ERROR")
            layout.prop(self, "unsaved", expand=True)
        missing = STATE.dialog_missing
        if missing:
            layout.label(
                text=f"{len(missing)} file(s) it uses are missing and will not be sent:",
                icon="ERROR",
            )
            box = layout.box().column(align=True)
            for path in missing[:MISSING_SHOWN]:
                box.label(text=path)
            if len(missing) > MISSING_SHOWN:
                box.label(text=f"… and {len(missing) - MISSING_SHOWN} more")

    def execute(self, context):
        if not bpy.data.filepath:
            self.report({"ERROR"}, "Save the file first: blendfarm sends the saved .blend")
            return {"CANCELLED"}
        if STATE.job is not None:
            self.report({"ERROR"}, "An upload to blendfarm is already running")
            return {"CANCELLED"}
        prefs = preferences(context)
        server = self.server or prefs.server
        if bpy.data.is_dirty:
            if self.asked and self.unsaved == "SAVE" and not bpy.app.background:
                bpy.ops.wm.save_mainfile()
            else:
                note = "Unsaved changes are not sent: the file as last saved is"
                self.report({"WARNING"}, note)
                if bpy.app.background:  # a script's reports are not shown there
                    print(f"blendfarm: warning: {note}")
        try:
            args = farm.submit_arguments(
                shlex.split(prefs.command),
                bpy.data.filepath,
                server,
                self.title,
                self.frames,
                self.tiles,
                self.overscan,
                self.priority,
                self.finish,
            )
            job = SubmitJob(args, cwd=os.path.dirname(bpy.data.filepath))
        except (farm.FarmError, OSError, ValueError) as exc:
            self.report({"ERROR"}, f"blendfarm: {exc}")
            return {"CANCELLED"}
        STATE.server = farm.server_url(server)
        STATE.message = ""
        STATE.missing = []
        STATE.project_id = ""
        STATE.polling = False
        STATE.phase = "packing"
        STATE.fraction = 0.0
        if bpy.app.background or self.wait:
            return self.wait_for(job)
        STATE.job = job
        start_timer()
        self.report({"INFO"}, "blendfarm: packing and uploading in the background")
        return {"FINISHED"}

    def wait_for(self, job):
        """Follow the job to its end, printing its progress (background mode, scripts)."""
        shown = {}
        for event in job.follow():
            apply_event(event)
            kind = event.get("event")
            if kind == "plan":
                print(f"blendfarm: packing {event.get('blend')}")
                for path in STATE.missing:
                    print(f"blendfarm: warning: missing file: {path}")
            elif kind in {"packing", "uploading"}:
                quarter = int(STATE.fraction * 4)
                if shown.get(kind, -1) < quarter:
                    shown[kind] = quarter
                    print(f"blendfarm: {kind} {int(STATE.fraction * 100)}%")
        STATE.polling = False
        if STATE.message or not STATE.project_id:
            self.report({"ERROR"}, f"blendfarm: {STATE.message or 'nothing was submitted'}")
            return {"CANCELLED"}
        print(f"blendfarm: submitted {STATE.project_title!r} as project {STATE.project_id}")
        return {"FINISHED"}


class BLENDFARM_OT_cancel(bpy.types.Operator):
    """Stop packing or uploading (the farm keeps nothing of it)"""

    bl_idname = "blendfarm.cancel"
    bl_label = "Cancel Upload"

    def execute(self, context):
        if STATE.job is not None:
            STATE.job.cancel()
        return {"FINISHED"}


class BLENDFARM_OT_test_connection(bpy.types.Operator):
    """Ask the farm which render nodes it has"""

    bl_idname = "blendfarm.test_connection"
    bl_label = "Test Connection"

    server: StringProperty(name="Server", description="Empty: the preferences' server")

    def execute(self, context):
        server = self.server or preferences(context).server
        if bpy.app.background:
            try:
                found = farm.nodes(server)
            except farm.FarmError as exc:
                self.report({"ERROR"}, f"blendfarm: {exc}")
                return {"CANCELLED"}
            nodes_checked(found, None)
            print(f"blendfarm: {STATE.nodes_text}")
            return {"FINISHED"}
        STATE.nodes_text = "asking the farm…"
        STATE.nodes_ok = True
        in_thread(lambda: farm.nodes(server), nodes_checked)
        return {"FINISHED"}


class BLENDFARM_OT_open_dashboard(bpy.types.Operator):
    """Open the farm's dashboard in the web browser"""

    bl_idname = "blendfarm.open_dashboard"
    bl_label = "Open Dashboard"

    def execute(self, context):
        prefs = preferences(context)
        try:
            url = farm.dashboard_url(STATE.server or prefs.server, prefs.dashboard)
        except farm.FarmError as exc:
            self.report({"ERROR"}, f"blendfarm: {exc}")
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=url)
        return {"FINISHED"}
