"""What the add-on knows between redraws, and the timer that keeps it current.

Nothing waits on the network or on packing in Blender's interface: a submission runs as a
subprocess (job.py), API calls run in threads, and `tick`, a `bpy.app.timers` function,
applies what they found on Blender's main thread and redraws the panel and the status bar.
"""

import json
import os
import queue
import shlex
import threading
import time

import bpy

from . import farm

ADDON = __package__  # "blendfarm_blender", or "bl_ext.<repository>.blendfarm_blender"
POLL_SECONDS = 2.0
TICK_SECONDS = 0.25


def settings_file():
    """What `blendfarm addon install` wrote: the command that runs blendfarm."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "settings.json")
    try:
        with open(path, encoding="utf-8") as fh:
            found = json.load(fh)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def default_command():
    command = settings_file().get("command")
    if isinstance(command, list) and command:
        return shlex.join(str(part) for part in command)
    return "blendfarm"


# -- state shared by the timer, the panel and the operators ----------------------------------


class State:
    """What the add-on knows between redraws (not saved in the .blend)."""

    def __init__(self):
        self.job = None
        self.phase = ""
        self.fraction = 0.0
        self.blend_name = ""
        self.missing = []
        self.dialog_missing = []
        self.message = ""
        self.server = ""
        self.project_id = ""
        self.project_title = ""
        self.project_text = ""
        self.project_fraction = 0.0
        self.polling = False
        self.last_poll = 0.0
        self.nodes_text = ""
        self.nodes_ok = True
        self.busy_threads = 0
        self.results = queue.Queue()


STATE = State()


def in_thread(work, done):
    """Run `work()` in a thread; `done(result, error)` later runs on Blender's main thread."""

    def run():
        try:
            result, error = work(), None
        except farm.FarmError as exc:
            result, error = None, exc
        except Exception as exc:  # shown in the panel; Blender must not lose its add-on
            result, error = None, farm.FarmError(f"{type(exc).__name__}: {exc}")
        STATE.results.put((done, result, error))

    STATE.busy_threads += 1
    threading.Thread(target=run, daemon=True).start()
    start_timer()


def start_timer():
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS)


def tick():
    """Apply what the job and the threads found; poll the project; redraw. Runs every
    TICK_SECONDS while anything is going on, then stops."""
    while True:
        try:
            done, result, error = STATE.results.get_nowait()
        except queue.Empty:
            break
        STATE.busy_threads -= 1
        done(result, error)
    job = STATE.job
    if job is not None:
        for event in job.events():
            apply_event(event)
        if job.finished:
            STATE.job = None
    if STATE.polling and not STATE.busy_threads:
        if time.monotonic() - STATE.last_poll >= POLL_SECONDS:
            STATE.last_poll = time.monotonic()
            server, pid = STATE.server, STATE.project_id
            in_thread(lambda: farm.project(server, pid), project_polled)
    redraw()
    going = STATE.job is not None or STATE.polling or STATE.busy_threads
    return TICK_SECONDS if going else None


def redraw():
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"PROPERTIES", "STATUSBAR"}:
                area.tag_redraw()


def apply_event(event):
    """One progress event of `blendfarm addon submit` (see blendfarm.addon.sending)."""
    kind = event.get("event")
    if kind == "plan":
        STATE.missing = [str(m) for m in event.get("missing") or []]
        STATE.blend_name = str(event.get("blend") or "")
        STATE.phase = "packing"
        STATE.fraction = 0.0
    elif kind in {"packing", "uploading"}:
        STATE.phase = kind
        total = int(event.get("total") or 0)
        STATE.fraction = min(1.0, int(event.get("done") or 0) / total) if total else 1.0
    elif kind == "submitted":
        project = event.get("project") or {}
        STATE.project_id = str(project.get("id") or "")
        STATE.project_title = str(project.get("title") or "")
        STATE.project_text, STATE.project_fraction = farm.project_progress(project)
        STATE.phase = ""
        STATE.polling = bool(STATE.project_id)
        STATE.last_poll = time.monotonic()
        wm = bpy.context.window_manager
        if wm is not None:
            wm.blendfarm_project = STATE.project_id
    elif kind == "error":
        STATE.message = str(event.get("message") or "the submission failed")
    elif kind == "exit":
        STATE.phase = ""
        if event.get("code") and not STATE.message:
            STATE.message = str(event.get("message") or "the submission failed")


def project_polled(found, error):
    if error is not None:
        # A farm away for a moment: keep asking; a project deleted meanwhile: stop.
        STATE.project_text = str(error)
        if error.status == 404:
            STATE.polling = False
        return
    STATE.project_text, STATE.project_fraction = farm.project_progress(found)
    if found.get("state") in {"done", "error"}:
        STATE.polling = False


# -- what the file needs ---------------------------------------------------------------------


def missing_files():
    """Files the open .blend uses that are not on disk (as `blendfarm submit --check` lists
    them): they cannot be packed and will be missing on the farm."""
    missing = []

    def check(block, path, library=None):
        if not path or getattr(block, "packed_file", None) is not None:
            return
        if path.startswith("<"):  # Blender's built-in font
            return
        if not os.path.exists(bpy.path.abspath(path, library=library)):
            missing.append(path)

    for image in bpy.data.images:
        if image.source in {"FILE", "SEQUENCE", "MOVIE"}:
            check(image, image.filepath, image.library)
    for library in bpy.data.libraries:
        parent = getattr(library, "parent", None)
        if getattr(library, "is_missing", False):
            missing.append(library.filepath)
        else:
            check(library, library.filepath, parent)
    for name in ("sounds", "movieclips", "fonts", "cache_files", "volumes"):
        for block in getattr(bpy.data, name, ()):
            check(block, getattr(block, "filepath", ""), getattr(block, "library", None))
    return sorted(set(missing))


def preferences(context=None):
    return (context or bpy.context).preferences.addons[ADDON].preferences


def nodes_checked(found, error):
    STATE.nodes_ok = error is None
    STATE.nodes_text = str(error) if error is not None else farm.nodes_text(found)
