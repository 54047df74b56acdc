"""The add-on's face: its preferences, the per-scene settings, the panel in Render
Properties › blendfarm, the progress bar in the status bar, and registration.
"""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import farm
from .operators import (
    MISSING_SHOWN,
    BLENDFARM_OT_cancel,
    BLENDFARM_OT_open_dashboard,
    BLENDFARM_OT_submit,
    BLENDFARM_OT_test_connection,
)
from .state import ADDON, STATE, default_command, preferences, tick

# -- preferences and per-scene settings ------------------------------------------------------


class BlendfarmPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    server: StringProperty(
        name="Server",
        description="The farm's API, as `blendfarm serve` prints it",
        default=farm.DEFAULT_SERVER,
    )
    dashboard: StringProperty(
        name="Dashboard",
        description="The dashboard's address (empty: the server's host on port 8080)",
        default="",
    )
    command: StringProperty(
        name="blendfarm command",
        description="The command that runs blendfarm on this computer "
        "(written by `blendfarm addon install`)",
        default=default_command(),
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "server")
        layout.prop(self, "dashboard")
        layout.prop(self, "command")
        layout.operator("blendfarm.test_connection", icon="URL")
        draw_nodes(layout)


class BlendfarmSceneSettings(bpy.types.PropertyGroup):
    title: StringProperty(
        name="Title", description="The project's title (empty: the .blend's name)", default=""
    )
    frames: EnumProperty(
        name="Frames",
        items=[
            ("SCENE", "Scene Range", "Render the scene's frame range as an animation"),
            ("FRAME", "One Frame", "Render one frame as a still image"),
        ],
        default="SCENE",
    )
    frame: IntProperty(name="Frame", description="The frame to render as a still", default=1)
    tiles: IntProperty(
        name="Tiles",
        description="Cut every frame into N×N chunks rendered on different nodes",
        default=1,
        min=1,
        max=64,
    )
    overscan: IntProperty(
        name="Overscan",
        description="Render this many pixels beyond every inner chunk edge, then crop them "
        "(hides denoising seams)",
        default=0,
        min=0,
        max=4096,
        subtype="PIXEL",
    )
    finish: EnumProperty(
        name="Finish",
        description="Tiled frames: render raw and denoise and composite each whole frame once",
        items=farm.FINISH_ITEMS,
        default="auto",
    )
    priority: IntProperty(
        name="Priority",
        description="0-100: a project of higher priority gets free nodes first",
        default=50,
        min=0,
        max=100,
    )


# -- drawing ---------------------------------------------------------------------------------


def progress_bar(layout, fraction, text, prop):
    """A progress bar: Blender 4's own widget, or a read-only percentage slider before it."""
    if hasattr(layout, "progress"):
        layout.progress(factor=max(0.0, min(1.0, fraction)), type="BAR", text=text)
    else:
        layout.prop(bpy.context.window_manager, prop, text=text, slider=True)


def draw_nodes(layout):
    if STATE.nodes_text:
        layout.label(text=STATE.nodes_text, icon="CHECKMARK" if STATE.nodes_ok else "ERROR")


def upload_text():
    name = STATE.blend_name or "the file"
    return f"{STATE.phase.capitalize()} {name}… {STATE.fraction:.0%}"


class RENDER_PT_blendfarm(bpy.types.Panel):
    bl_label = "blendfarm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        prefs = preferences(context)
        scene = context.scene
        settings = scene.blendfarm

        col = layout.column()
        col.prop(prefs, "server")
        col.operator("blendfarm.test_connection", icon="URL")
        draw_nodes(col)

        col = layout.column()
        col.prop(settings, "title", text="Title")
        col.row().prop(settings, "frames", expand=True)
        if settings.frames == "FRAME":
            col.prop(settings, "frame")
        else:  # the scene's own range, as the farm reads it from the saved file
            sub = col.column(align=True)
            sub.prop(scene, "frame_start", text="Frame Start")
            sub.prop(scene, "frame_end", text="End")
        col.prop(settings, "tiles")
        col.prop(settings, "overscan")
        col.prop(settings, "finish")
        col.prop(settings, "priority")

        running = STATE.job is not None
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = not running and bool(bpy.data.filepath)
        op = row.operator("blendfarm.submit", text="Submit", icon="EXPORT")
        op.title = settings.title
        op.frames = str(settings.frame) if settings.frames == "FRAME" else ""
        op.tiles = settings.tiles
        op.overscan = settings.overscan
        op.priority = settings.priority
        op.finish = settings.finish
        if not bpy.data.filepath:
            layout.label(text="Save the file to submit it", icon="INFO")

        if running:
            row = layout.row(align=True)
            progress_bar(row, STATE.fraction, upload_text(), "blendfarm_upload")
            row.operator("blendfarm.cancel", text="", icon="CANCEL")
        if STATE.missing:
            box = layout.box().column(align=True)
            box.label(text=f"Missing, not sent ({len(STATE.missing)}):", icon="ERROR")
            for path in STATE.missing[:MISSING_SHOWN]:
                box.label(text=path)
        if STATE.message:
            layout.label(text=STATE.message, icon="ERROR")
        if STATE.project_id:
            box = layout.box()
            box.label(text=f"{STATE.project_title or 'Project'} · {STATE.project_id}")
            progress_bar(box, STATE.project_fraction, STATE.project_text, "blendfarm_render")
            box.operator("blendfarm.open_dashboard", icon="URL")


def draw_status(self, context):
    """The upload's progress in the status bar, while there is one."""
    if STATE.job is None:
        return
    row = self.layout.row(align=True)
    row.label(text="blendfarm")
    progress_bar(row, STATE.fraction, upload_text(), "blendfarm_upload")


# -- registration ----------------------------------------------------------------------------

CLASSES = (
    BlendfarmPreferences,
    BlendfarmSceneSettings,
    BLENDFARM_OT_submit,
    BLENDFARM_OT_cancel,
    BLENDFARM_OT_test_connection,
    BLENDFARM_OT_open_dashboard,
    RENDER_PT_blendfarm,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.blendfarm = PointerProperty(type=BlendfarmSceneSettings)
    wm = bpy.types.WindowManager
    wm.blendfarm_project = StringProperty(
        name="blendfarm project", description="The id of the project submitted last"
    )
    wm.blendfarm_upload = FloatProperty(
        name="Upload",
        subtype="PERCENTAGE",
        precision=0,
        min=0,
        max=100,
        get=lambda _self: STATE.fraction * 100,
        set=lambda _self, _value: None,
    )
    wm.blendfarm_render = FloatProperty(
        name="Render",
        subtype="PERCENTAGE",
        precision=0,
        min=0,
        max=100,
        get=lambda _self: STATE.project_fraction * 100,
        set=lambda _self, _value: None,
    )
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister():
    if STATE.job is not None:
        STATE.job.cancel()
        STATE.job = None
    STATE.polling = False
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    for name in ("blendfarm_project", "blendfarm_upload", "blendfarm_render"):
        delattr(bpy.types.WindowManager, name)
    del bpy.types.Scene.blendfarm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
