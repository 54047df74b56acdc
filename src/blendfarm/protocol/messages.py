"""Every message of the API, as msgspec Structs (see the package's docstring)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from ..formats import OutputFormat
from ..states import ProjectState, TaskKind
from ..tiles import Rect

PASSWORD_HEADER = "X-Blendfarm-Password"  # the admin password
OWNER_HEADER = "X-Blendfarm-Owner-Key"  # a project's owner key, returned once at submit

Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Short = Annotated[str, Meta(max_length=100)]
TaskId = Annotated[int, Meta(ge=0, lt=2**62)]
LogLine = Annotated[str, Meta(max_length=100_000)]
Path_ = Annotated[str, Meta(max_length=4096)]
Sentence = Annotated[str, Meta(max_length=500)]
NodeState = Literal["idle", "rendering", "offline", "disabled", "resting"]
Tag = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9_.-]+$")]
Priority = Annotated[int, Meta(ge=0, le=100)]


class Message(Struct, kw_only=True):
    """Base of every message."""


# -- errors -------------------------------------------------------------------------------


class ErrorDetail(Message):
    code: str
    message: str
    status: int


class ErrorBody(Message):
    """The one shape of every API error."""

    error: ErrorDetail


# -- projects -----------------------------------------------------------------------------


class Project(Message):
    """A project as people see it."""

    id: str
    title: str
    blend: str
    state: ProjectState
    error: str | None
    animation: bool
    frame_start: int | None
    frame_end: int | None
    tiles: int
    overscan: int
    device: str
    chunks_done: int
    chunks_total: int
    chunks_rendering: int
    frames_done: int
    width: int | None
    height: int | None
    fps: float | None
    size: int
    created: str
    updated: str
    result_url: str | None
    raw_url: str | None
    thumbnail_url: str | None
    result_type: str | None
    frames_url: str | None
    """An animation's frames in the scene's format, as a zip (`.../frames/N` for one)."""
    output_format: str | None
    """The scene's output format in words ("OpenEXR half", "PNG 16-bit"), once probed."""
    blocklist: list[str]
    warnings: list[str]
    file_version: str | None
    waiting: str | None
    """Why a project with work gets none right now (no node online, none new enough)."""
    owner_key: str | None
    """The key that lets its submitter delete or retry it: in the answer to the submission
    only (the server keeps only a hash of it)."""
    priority: int
    """0-100: a higher priority gets free nodes first; equal priorities share them."""
    require_tags: list[str]
    """Only nodes with every one of these tags render it."""
    frame_order: Literal["preview", "sequential"]
    notify: bool
    """Whether it has its own notification URL (the URL itself is never shown)."""
    nodes_working: int
    eta_low: float | None
    """Seconds until its chunks are rendered, soonest and latest, from measured chunk times
    and the nodes working on it (None until a chunk's time is known or while no node works)."""
    eta_high: float | None
    frame_times: list[FrameTime]
    """Render time of every frame whose chunks are all measured (a chunk's time sums)."""
    finish: str = "auto"
    """never | auto | always: when tiled frames render raw and a finish task denoises and
    composites each whole frame (see `Task.finish`)."""


class FrameTime(Message):
    frame: int
    seconds: float


class SubmissionForm(Message):
    """The multipart form of a submission (every field but `file` is optional text)."""

    file: Annotated[str, Meta(extra_json_schema={"format": "binary"})]
    blend: str = ""
    title: Annotated[str, Meta(max_length=200)] = ""
    animation: Literal["true", "false", ""] = ""
    frame: str = ""
    frames: str = ""
    frame_start: str = ""
    frame_end: str = ""
    tiles: str = ""
    overscan: str = ""
    device: Literal["", "any", "gpu", "cpu", "scene"] = ""
    """Which slots may render it: any, only a GPU, only a CPU, or any keeping the scene's
    own `cycles.device = 'CPU'`."""
    priority: str = ""
    """0-100, default 50."""
    paused: Literal["true", "false", ""] = ""
    require_tags: str = ""
    """Comma-separated tags a node must have to render it ("gpu,big-ram")."""
    order: Literal["preview", "sequential", ""] = ""
    """preview (default): first, last and middle frame first; sequential: plain order."""
    notify: Annotated[str, Meta(max_length=2000)] = ""
    """An Apprise URL told when the project is done or in error."""
    finish: Literal["never", "auto", "always", ""] = ""
    """auto (default): a tiled frame whose scene denoises or composites renders raw chunks
    and is denoised and composited whole by a finish task; always: every tiled frame does;
    never: every chunk is denoised and composited on its own."""


class PriorityChange(Message):
    priority: Priority


class RequeueRequest(Message):
    """What to render again: frames ("12-15") or chunks ("FRAME:ROW:COL")."""

    frames: Annotated[str, Meta(max_length=100)] = ""
    chunks: Annotated[list[Annotated[str, Meta(max_length=40)]], Meta(max_length=10_000)] = []


class Requeued(Message):
    project: Project
    chunks: int
    """How many chunks went back to the queue."""


class Deleted(Message):
    deleted: str
    freed: int


# -- nodes as people see them -----------------------------------------------------------


class CurrentTask(Message):
    """What a node is rendering."""

    project: str
    title: str
    kind: TaskKind
    frame: int
    row: int
    col: int


class NodeInfo(Message):
    """What a node says about itself when it registers."""

    blender_version: Short = ""
    blender_sha256: Short = ""
    hostname: Short = ""
    cores: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    version: Short = ""
    devices: Annotated[list[Short], Meta(max_length=64)] = []
    """Every GPU Blender reports on the node, e.g. "CUDA 0 (NVIDIA GeForce RTX 4090)"."""
    slots: Annotated[list[Short], Meta(max_length=64)] = []
    """What each of its render sessions renders on ("CUDA 0 (...)", "CPU"): one chunk each."""
    tags: Annotated[list[Tag], Meta(max_length=32)] = []
    """Projects that require tags go only to nodes with all of them."""
    schedule: Annotated[str, Meta(max_length=500)] = ""
    """Hours in which the node takes no work: "mon-fri 09:00-18:00 off" (server's time)."""


class Node(Message):
    name: str
    online: bool
    state: NodeState
    blender_version: str | None
    started: str | None
    last_seen: str | None
    chunks_done: int
    current: CurrentTask | None
    log_tail: list[str]
    info: NodeInfo
    devices: list[str]
    """The GPUs Blender reports on the node (as in `info`)."""
    slots: list[str]
    """What each of its render sessions renders on, e.g. ["CUDA 0 (...)", "CPU"]."""
    disabled: bool
    resting: bool
    """Inside its schedule's off hours: it takes no work."""


class Disk(Message):
    total: int
    used: int
    free: int
    data: int


class Status(Message):
    """Projects, nodes and disk use at once (also the event stream's payload)."""

    server_id: str
    version: str
    projects: list[Project]
    nodes: list[Node]
    disk: Disk
    throughput: float
    """Chunks the farm finished in the last hour."""


class Health(Message):
    ok: bool
    version: str
    server_id: str


class Lines(Message):
    lines: list[str]


# -- the node protocol ------------------------------------------------------------------


class Welcome(Message):
    """The server's answer to a node's hello."""

    server_id: str
    blender_sha256: str | None
    node_timeout: float
    heartbeat: float
    chunk_timeout: float


class Heartbeat(Message):
    tasks: Annotated[list[TaskId], Meta(max_length=100)] = []
    log: list[LogLine] = []


class HeartbeatAnswer(Message):
    server_id: str
    cancel: list[int]
    """Tasks the node holds but must stop (their lease is gone)."""
    blender_sha256: str | None


class Stops(Message):
    """Tasks a node holds but must stop now (another node's copy finished first, ...)."""

    cancel: list[int]


class Task(Message):
    """A leased task: a probe (read the scene), a chunk (render one rectangle of a frame) or
    a finish (denoise and composite a whole frame from its passes; `frame`, `passes_url`)."""

    id: int
    lease: str
    kind: TaskKind
    project: str
    title: str
    sha256: str
    archive_size: int
    archive_url: str
    blend: str
    timeout: float
    frame: int | None = None
    row: int | None = None
    col: int | None = None
    tiles: int | None = None
    width: int | None = None
    height: int | None = None
    rect: Rect | None = None
    render_rect: Rect | None = None
    """The rectangle Blender renders: `rect` grown by the overscan."""
    border: list[float] | None = None
    """Blender's render border (min_x, max_x, min_y, max_y), or None for a whole frame."""
    scene_device: bool = False
    """Keep the scene's own `cycles.device = 'CPU'` (the project asked for it)."""
    content_sha: str = ""
    """The project's files and .blend name, hashed: equal for projects of identical content
    (however they were zipped), so a node keeps its unpacked files and its Blender for them;
    '' for a project submitted before it existed."""
    finish: str = "never"
    """The project's finish mode: the node renders a chunk raw (a multilayer EXR, not
    denoised, not composited; uploaded with kind=raw) when the frame is tiled and the mode
    is "always", or "auto" and the scene denoises with Cycles or uses the compositor. A
    server that sends none takes no raw chunk: "never"."""
    passes_url: str | None = None
    """A finish task: where its frame's stitched raw passes are (GET with the node token)."""
    passes_sha256: str | None = None
    """A finish task: the sha256 of those passes, checked after the download."""


class Probe(Message):
    """What a node read from the scene with Blender."""

    resolution_x: int
    resolution_y: int
    resolution_percentage: int
    frame_start: int
    frame_end: int
    fps: float
    fps_base: float
    frame_current: int | None = None
    engine: Short | None = None
    film_transparent: bool | None = None
    compositor: bool = False
    denoising: bool = False
    color_depth: Short | None = None
    file_version: Short | None = None
    blender_version: Short | None = None
    missing: Annotated[list[Annotated[str, Meta(max_length=4096)]], Meta(max_length=10_000)] = []
    scripts_blocked: Annotated[
        list[Annotated[str, Meta(max_length=500)]], Meta(max_length=100)
    ] = []
    """What a node did not run because auto-run of Python is off (drivers, text blocks...)."""
    # What stops every render (None: a node too old to check). `engine` is the engine the
    # file asks for, `engine_available` whether the node's Blender has it.
    camera: bool | None = None
    """Whether the scene has an active camera (or renders its video sequencer)."""
    missing_libraries: Annotated[
        list[Annotated[str, Meta(max_length=4096)]], Meta(max_length=10_000)
    ] = []
    """Linked libraries the node's Blender could not open."""
    engine_available: bool | None = None
    denoiser_available: bool | None = None
    """Whether the node's Blender can denoise as the scene asks (None: no denoising)."""
    output: OutputFormat | None = None
    """The scene's output format (Blender's image settings; None: a node too old to say)."""


class Failure(Message):
    node: Annotated[str, Meta(max_length=64)] = ""
    message: Annotated[str, Meta(max_length=100_000)] = ""
    log: list[LogLine] = []


class FailureAnswer(Message):
    recorded: bool
    project_error: bool


class Accepted(Message):
    accepted: bool
    reason: str | None = None
    # The node's next task when it asked for one with the result (`?next=cpu|gpu&node=N`):
    # one request per chunk instead of a result and a lease. None: nothing queued for it now
    # (it asks again with a long poll).
    next: Task | None = None


class Ok(Message):
    ok: bool


# -- admin --------------------------------------------------------------------------------


class Purged(Message):
    purged: bool


class NewPassword(Message):
    password: Annotated[str, Meta(min_length=8, max_length=200)]


class NodeBlender(Message):
    version: str | None
    sha256: str | None
    online: bool


class BlenderStatus(Message):
    """The server's Blender (when it has one) and the Blender every node runs."""

    available: bool
    filename: str | None
    sha256: str | None
    size: int | None
    uploaded: str | None
    executable: str | None
    nodes: dict[str, NodeBlender]
