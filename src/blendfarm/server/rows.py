"""What the store hands out: typed, immutable rows (never sqlite3.Row or dicts)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from ..formats import OutputFormat, output_format
from ..scheduler import DEFAULT_PRIORITY, FrameOrder
from ..states import ProjectState, TaskKind, TaskState


class NewProject(msgspec.Struct, frozen=True, kw_only=True):
    """A project as submitted, before any node has read its scene."""

    title: str
    blend: str
    sha256: str
    archive_size: int
    animation: bool
    frame_start: int | None
    frame_end: int | None
    tiles: int
    overscan: int
    file_version: str | None = None
    owner_key_hash: str | None = None  # sha256 of the key handed to the submitter once
    device: str = "any"  # which slots may render it (validate.DEVICES)
    priority: int = DEFAULT_PRIORITY
    require_tags: list[str] = []
    frame_order: FrameOrder = FrameOrder.PREVIEW
    paused: bool = False
    notify: str | None = None  # an Apprise URL told when it is done or in error
    content_sha: str | None = None  # its files and .blend name hashed (content_hash.py)
    finish: str = "auto"  # never, auto, always: when tiled frames are finished whole


class ProjectRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    blend: str
    sha256: str
    archive_size: int
    animation: bool
    frame_start: int | None
    frame_end: int | None
    tiles: int
    overscan: int
    state: ProjectState
    error: str | None
    width: int | None  # None until the probe is in
    height: int | None
    fps: float | None
    fps_base: float | None
    probe: dict[str, Any] | None  # what the probe reported, as it sent it
    scene: dict[str, Any] | None  # what the server read from the .blend at submit, if it could
    scene_frames: bool  # it renders its scene's own frame range (none was given)
    output_format: OutputFormat  # the scene's (PNG 8-bit until probed)
    warnings: list[str]
    size: int  # bytes stored for it on the server
    result: str | None  # file name of the result once done
    thumbnail: bool
    file_version: str | None  # the Blender that saved the .blend ('4.2'), when known
    owner_key_hash: str | None  # None for projects made before owner keys: admin only
    device: str  # which slots may render it: any, gpu, cpu, scene (validate.DEVICES)
    priority: int
    require_tags: list[str]  # only nodes with every one of these tags render it
    frame_order: FrameOrder
    notify: str | None
    notified: str | None  # the state last told to the notifiers
    content_sha: str | None  # its files and .blend name hashed; None for older projects
    finish: str  # never, auto, always (formats.FINISH_MODES)
    created: float
    updated: float


class TaskRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    project_id: str
    kind: TaskKind
    frame: int
    row: int
    col: int
    state: TaskState
    node: str | None  # who renders it (while rendering)
    lease: str | None  # the current lease (while rendering)
    lease_expires: float | None
    started: float | None
    finished: float | None
    failed_on: list[str]  # nodes it failed on (it is not offered to them again)
    last_error: str | None
    leases: list[str]  # every lease ever issued for it (a late result under an old one is good)
    rank: int  # its frame's place in the render order
    seconds: float | None  # how long its last render took, once done
    copy_node: str | None = None  # the node rendering its copy (a straggler's second lease)
    copy_lease: str | None = None
    copy_expires: float | None = None
    copy_started: float | None = None
    copies: int = 0  # copies made during this render (at most one)


class ProjectCounts(msgspec.Struct, kw_only=True):
    """A project's tasks at a glance."""

    total: int = 0  # chunks
    done: int = 0  # chunks done
    rendering: int = 0  # chunks rendering
    busy: int = 0  # tasks rendering (the probe too)
    frames: int = 0  # frames stitched
    finishes: int = 0  # finish tasks (one per frame of raw chunks, once they are all in)
    finishes_done: int = 0


class CurrentTask(msgspec.Struct, frozen=True, kw_only=True):
    """The task a node is rendering."""

    project_id: str
    title: str
    kind: TaskKind
    frame: int
    row: int
    col: int


class NodeRow(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    blender_version: str | None
    started: float
    last_seen: float
    chunks_done: int
    info: dict[str, Any]  # what it said when it registered
    log: list[str]  # its recent log lines, oldest first
    offline: bool
    disabled: bool  # an admin said: finish what you render, then take nothing
    current: CurrentTask | None


_strings = msgspec.json.Decoder(list[str])
_object = msgspec.json.Decoder(dict[str, Any])


def project_row(r: sqlite3.Row) -> ProjectRow:
    return ProjectRow(
        id=r["id"],
        title=r["title"],
        blend=r["blend"],
        sha256=r["sha256"],
        archive_size=r["archive_size"],
        animation=bool(r["animation"]),
        frame_start=r["frame_start"],
        frame_end=r["frame_end"],
        tiles=r["tiles"],
        overscan=r["overscan"],
        device=r["device"],
        state=ProjectState(r["state"]),
        error=r["error"],
        width=r["width"],
        height=r["height"],
        fps=r["fps"],
        fps_base=r["fps_base"],
        probe=None if r["probe"] is None else _object.decode(r["probe"]),
        scene=None if r["scene"] is None else _object.decode(r["scene"]),
        scene_frames=bool(r["scene_frames"]),
        output_format=output_format(
            None if r["output_format"] is None else _object.decode(r["output_format"])
        ),
        warnings=_strings.decode(r["warnings"]),
        size=r["size"],
        result=r["result"],
        thumbnail=bool(r["thumbnail"]),
        file_version=r["file_version"],
        owner_key_hash=r["owner_key_hash"],
        priority=r["priority"],
        require_tags=_strings.decode(r["require_tags"]),
        frame_order=FrameOrder(r["frame_order"]),
        notify=r["notify"],
        notified=r["notified"],
        content_sha=r["content_sha"],
        finish=r["finish"],
        created=r["created"],
        updated=r["updated"],
    )


def task_row(r: sqlite3.Row) -> TaskRow:
    return TaskRow(
        id=r["id"],
        project_id=r["project_id"],
        kind=TaskKind(r["kind"]),
        frame=r["frame"],
        row=r["row"],
        col=r["col"],
        state=TaskState(r["state"]),
        node=r["node"],
        lease=r["lease"],
        lease_expires=r["lease_expires"],
        started=r["started"],
        finished=r["finished"],
        failed_on=_strings.decode(r["failed_on"]),
        last_error=r["last_error"],
        leases=_strings.decode(r["leases"]),
        rank=r["rank"],
        seconds=r["seconds"],
        copy_node=r["copy_node"],
        copy_lease=r["copy_lease"],
        copy_expires=r["copy_expires"],
        copy_started=r["copy_started"],
        copies=r["copies"],
    )


def current_task(r: sqlite3.Row) -> CurrentTask:
    return CurrentTask(
        project_id=r["project_id"],
        title=r["title"],
        kind=TaskKind(r["kind"]),
        frame=r["frame"],
        row=r["row"],
        col=r["col"],
    )


def node_row(r: sqlite3.Row, current: CurrentTask | None) -> NodeRow:
    return NodeRow(
        name=r["name"],
        blender_version=r["blender_version"],
        started=r["started"],
        last_seen=r["last_seen"],
        chunks_done=r["chunks_done"],
        info=_object.decode(r["info"]),
        log=_strings.decode(r["log"]),
        offline=bool(r["offline"]),
        disabled=bool(r["disabled"]),
        current=current,
    )
