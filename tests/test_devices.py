"""Devices and slots: what --device/--gpus/--cpu-slot make of the GPUs Blender reports.

The machines the suite runs on have no GPU, so GPUs are faked where Blender's report is read
(BLENDFARM_FAKE_DEVICES): the node plans its slots, registers them and runs one render
session per slot through the same code as with real devices.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apphelpers import NODE, InProcessFarm
from blendfarm.errors import BadInput, BlendfarmError
from blendfarm.node.devices import (
    BACKENDS,
    FAKE_ENV,
    Device,
    Slot,
    fake_devices,
    parse_gpus,
    plan_slots,
    reported_devices,
)
from blendfarm.node.node import Node
from blendfarm.settings import NodeSettings
from test_node import FakeRenderer


def gpus(*specs: str) -> list[Device]:
    return fake_devices(",".join(specs))


def labels(devices: list[Device], device: str, picked: str = "all", cpu: bool = False) -> list:
    return [slot.label for slot in plan_slots(devices, device, picked, cpu).slots]


def test_auto_takes_the_best_backend_blender_reports() -> None:
    found = gpus("CUDA:RTX A", "OPTIX:RTX A", "HIP:Radeon")
    plan = plan_slots(found, "auto", "all", False)
    assert plan.backend == "OPTIX"
    assert labels(found, "auto") == ["OPTIX 0 (RTX A)"]


def test_auto_without_a_gpu_renders_on_the_cpu_and_says_so() -> None:
    plan = plan_slots([], "auto", "all", False)
    assert [s.device for s in plan.slots] == [None]
    assert plan.summary("auto") == "rendering on the CPU (Blender reports no GPU): 1 slot"


def test_a_backend_named_but_absent_is_one_sentence() -> None:
    with pytest.raises(BlendfarmError) as caught:
        plan_slots(gpus("HIP:Radeon"), "cuda", "all", False)
    assert str(caught.value).startswith("no CUDA device found (Blender reports HIP)")
    assert "\n" not in str(caught.value)


def test_gpus_picks_devices_by_number_and_refuses_one_it_lacks() -> None:
    found = gpus("CUDA:A", "CUDA:B", "CUDA:C")
    assert labels(found, "cuda", "0,2") == ["CUDA 0 (A)", "CUDA 2 (C)"]
    with pytest.raises(BlendfarmError, match="no CUDA device 5 .this node has 0, 1, 2."):
        plan_slots(found, "cuda", "5", False)


def test_a_cpu_slot_goes_beside_the_gpus_and_cpu_means_one_cpu_slot() -> None:
    found = gpus("CUDA:A", "CUDA:B")
    assert labels(found, "auto", cpu=True) == ["CUDA 0 (A)", "CUDA 1 (B)", "CPU"]
    assert labels(found, "cpu", cpu=True) == ["CPU"]


@pytest.mark.parametrize("device", ["gpu", "cuda0", ""])
def test_an_unknown_device_is_refused(device: str) -> None:
    with pytest.raises(BadInput, match="--device"):
        plan_slots([], device, "all", False)


@pytest.mark.parametrize("text", ["0,x", "-1", "all,0", "1.5"])
def test_a_garbled_gpu_list_is_refused(text: str) -> None:
    with pytest.raises(BadInput, match="--gpus"):
        parse_gpus(text)


def test_the_fake_list_replaces_what_blender_reports_only_when_set() -> None:
    def blender() -> list[dict[str, Any]]:
        return [{"backend": "HIP", "index": 0, "id": "HIP_0000", "name": "Radeon"}]

    assert [d.label for d in reported_devices({}, blender)] == ["HIP 0 (Radeon)"]
    fake = reported_devices({FAKE_ENV: "CUDA:A, CUDA:B"}, blender)
    assert [d.label for d in fake] == ["CUDA 0 (A)", "CUDA 1 (B)"] and all(d.fake for d in fake)
    assert reported_devices({FAKE_ENV: "none"}, blender) == []
    with pytest.raises(BadInput, match=FAKE_ENV):
        fake_devices("CUDA")


@given(
    st.lists(st.sampled_from(BACKENDS), max_size=8),
    st.sampled_from(["auto", "cpu", *[b.lower() for b in BACKENDS]]),
    st.booleans(),
)
def test_every_slot_has_its_own_device_and_one_backend(
    backends: list[str], device: str, cpu_slot: bool
) -> None:
    found = fake_devices(",".join(f"{b}:GPU {n}" for n, b in enumerate(backends)) or "none")
    try:
        plan = plan_slots(found, device, "all", cpu_slot)
    except BlendfarmError as exc:
        assert device.upper() not in backends and "device found" in str(exc)
        return
    gpu_slots = [s.device for s in plan.slots if s.device is not None]
    assert len(set(gpu_slots)) == len(gpu_slots)
    assert {d.backend for d in gpu_slots} <= {plan.backend}
    assert [s.number for s in plan.slots] == list(range(len(plan.slots)))
    cpus = sum(s.device is None for s in plan.slots)
    assert cpus == (1 if device == "cpu" or not gpu_slots else int(cpu_slot))
    if device not in {"auto", "cpu"}:
        assert len(gpu_slots) == backends.count(device.upper())


class MeetingRenderer(FakeRenderer):
    """A slot's renderer: remembers its device; renders only once every slot renders too."""

    def __init__(self, slot: Slot, meeting: threading.Barrier, seen: list[str | None]):
        super().__init__()
        self.slot = slot
        self.meeting = meeting
        self.seen = seen

    def render(self, blend: Path, command: dict[str, Any]) -> Path:
        self.seen.append(self.slot.label)
        self.meeting.wait()  # times out (BrokenBarrierError) unless the slots render together
        return super().render(blend, command)


def test_two_fake_gpus_make_two_slots_rendering_at_once(
    farm: InProcessFarm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAKE_ENV, "CUDA:Fake A,CUDA:Fake B")
    pid = farm.submit({"frames": "1-2", "tiles": "2"}).json()["id"]
    meeting = threading.Barrier(2, timeout=30)
    seen: list[str | None] = []
    renderers: list[MeetingRenderer] = []

    def make(slot: Slot) -> MeetingRenderer:
        renderers.append(MeetingRenderer(slot, meeting, seen))
        return renderers[-1]

    settings = NodeSettings(
        server="http://testserver", name="gpus", work_dir=tmp_path / "w", token="tok-123"
    )
    node = Node(settings, http=farm.client, renderers=make, say=lambda _m: None)
    node.register()
    assert [w.slot.label for w in node.workers] == ["CUDA 0 (Fake A)", "CUDA 1 (Fake B)"]
    shown = farm.client.get("/api/nodes").json()[0]
    assert shown["devices"] == shown["slots"] == ["CUDA 0 (Fake A)", "CUDA 1 (Fake B)"]
    assert shown["info"]["slots"] == shown["slots"]
    # The probe is leased first: a slot renders it alone, so the meeting starts after it.
    probe = node._lease()
    assert probe is not None and probe.kind == "probe"
    node.run_task(probe)
    assert node.run(burst=True) == 8
    farm.background.composite_all()
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    assert sorted({r.slot.label for r in renderers}) == ["CUDA 0 (Fake A)", "CUDA 1 (Fake B)"]
    assert seen.count("CUDA 0 (Fake A)") == seen.count("CUDA 1 (Fake B)") == 4
    assert all(r.closed for r in renderers)


def test_a_node_refuses_a_bad_device_choice_before_it_starts(tmp_path: Path) -> None:
    settings = NodeSettings(work_dir=tmp_path / "w", device="gpu")
    with pytest.raises(BadInput, match="--device 'gpu'"):
        Node(settings)


def lease(farm: InProcessFarm, slot: str, node: str = "n1") -> dict[str, Any] | None:
    resp = farm.client.post(f"/api/nodes/{node}/lease", params={"slot": slot}, headers=NODE)
    assert resp.status_code in (200, 204), resp.text
    return resp.json() if resp.status_code == 200 else None


@pytest.mark.parametrize(
    ("device", "slot", "other"), [("gpu", "gpu", "cpu"), ("cpu", "cpu", "gpu")]
)
def test_a_project_that_requires_a_device_goes_only_to_such_slots(
    farm: InProcessFarm, device: str, slot: str, other: str
) -> None:
    resp = farm.submit({"frame": "1", "device": device})
    assert resp.status_code == 201, resp.text
    assert resp.json()["device"] == device
    farm.register()
    assert lease(farm, other) is None
    task = lease(farm, slot)
    assert task is not None and task["kind"] == "probe" and task["scene_device"] is False


def test_any_project_goes_to_every_slot_and_scene_tells_the_session(
    farm: InProcessFarm,
) -> None:
    farm.submit({"frame": "1", "device": "scene"})
    farm.submit({"frame": "2"})
    farm.register()
    first, second = lease(farm, "gpu"), lease(farm, "cpu")
    assert first is not None and second is not None
    assert sorted([first["scene_device"], second["scene_device"]]) == [False, True]


def test_an_unknown_project_device_is_a_400(farm: InProcessFarm) -> None:
    resp = farm.submit({"frame": "1", "device": "tpu"})
    assert resp.status_code == 400 and "device 'tpu'" in resp.json()["error"]["message"]


def test_a_node_leases_gpu_projects_for_its_gpu_slot_only(
    farm: InProcessFarm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAKE_ENV, "HIP:Fake")
    farm.submit({"frame": "1", "device": "gpu"})
    farm.submit({"frame": "1", "device": "cpu"})
    rendered: dict[str, list[str]] = {}

    class Recording(FakeRenderer):
        def __init__(self, slot: Slot):
            super().__init__()
            self.slot = slot

        def render(self, blend: Path, command: dict[str, Any]) -> Path:
            rendered.setdefault(self.slot.label, []).append(command["output"])
            return super().render(blend, command)

    settings = NodeSettings(
        server="http://testserver",
        name="mixed",
        work_dir=tmp_path / "w",
        token="tok-123",
        cpu_slot=True,
    )
    node = Node(settings, http=farm.client, renderers=Recording, say=lambda _m: None)
    assert node.run(burst=True) >= 3  # two probes, two chunks: some slot may see an empty queue
    farm.background.composite_all()
    projects = farm.client.get("/api/projects").json()
    assert [p["state"] for p in projects] == ["done", "done"], projects
    assert {label: len(outs) for label, outs in rendered.items()} == {"HIP 0 (Fake)": 1, "CPU": 1}
