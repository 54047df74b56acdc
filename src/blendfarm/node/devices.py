"""The devices a node renders on, and its slots: one render session per device in use.

Blender reports its GPUs (blender.list_devices asks it); `plan_slots` turns that list and the
node's `--device`, `--gpus` and `--cpu-slot` into slots, or refuses with one sentence. All of
it is plain functions over plain data. `BLENDFARM_FAKE_DEVICES` (read by `reported_devices`)
replaces what Blender reports, for tests on machines without a GPU: "CUDA:Fake A,CUDA:Fake B"
gives two CUDA devices, "none" gives none. A fake device is carried to the session like a real
one, which then renders on the CPU and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput, BlendfarmError

FAKE_ENV = "BLENDFARM_FAKE_DEVICES"
BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
"""Cycles' GPU backends, best first: `--device auto` takes the first one with a device."""
BACKEND_NAMES = {
    "OPTIX": "OptiX",
    "CUDA": "CUDA",
    "HIP": "HIP",
    "ONEAPI": "oneAPI",
    "METAL": "Metal",
}
DEVICE_CHOICES = ("auto", "cpu", "optix", "cuda", "hip", "oneapi", "metal")


@dataclass(frozen=True)
class Device:
    """One GPU as Blender reports it; `index` counts within its backend."""

    backend: str
    index: int
    id: str
    name: str
    fake: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend} {self.index} ({self.name})"

    def command(self) -> dict[str, Any]:
        """What the render session is told (blender_script.use_device)."""
        return {
            "backend": self.backend,
            "index": self.index,
            "id": self.id,
            "name": self.name,
            "fake": self.fake,
        }


@dataclass(frozen=True)
class Slot:
    """One render session of the node: a GPU, or the CPU when `device` is None."""

    number: int
    device: Device | None

    @property
    def label(self) -> str:
        return "CPU" if self.device is None else self.device.label


@dataclass(frozen=True)
class Plan:
    """What the node renders on: the backend chosen ('CPU' when none) and its slots."""

    backend: str
    slots: tuple[Slot, ...]

    def summary(self, device: str = "auto") -> str:
        """One sentence for the start of the node's log (`device`: what --device asked)."""
        if self.backend == "CPU":
            why = " (Blender reports no GPU)" if device.strip().lower() == "auto" else ""
            return f"rendering on the CPU{why}: 1 slot"
        labels = ", ".join(slot.label for slot in self.slots)
        count = f"{len(self.slots)} slot" + ("" if len(self.slots) == 1 else "s")
        return f"rendering on {BACKEND_NAMES[self.backend]}: {labels} ({count})"


def from_blender(raw: list[dict[str, Any]]) -> list[Device]:
    """Blender's answer (blender_script.list_devices) as devices."""
    return [
        Device(str(d["backend"]).upper(), int(d["index"]), str(d["id"]), str(d["name"]))
        for d in raw
    ]


def fake_devices(text: str) -> list[Device]:
    """The fake list "BACKEND:NAME,BACKEND:NAME" ("none": no device); BadInput if garbled."""
    devices: list[Device] = []
    if text.strip().lower() == "none":
        return devices
    counts: dict[str, int] = {}
    for item in text.split(","):
        backend, sep, name = item.strip().partition(":")
        backend = backend.strip().upper()
        if not sep or backend not in BACKENDS or not name.strip():
            raise BadInput(f"{FAKE_ENV}: {item.strip()!r} is not BACKEND:NAME")
        index = counts.get(backend, 0)
        counts[backend] = index + 1
        devices.append(Device(backend, index, f"FAKE_{backend}_{index}", name.strip(), fake=True))
    return devices


def reported_devices(
    env: Mapping[str, str], ask_blender: Callable[[], list[dict[str, Any]]]
) -> list[Device]:
    """The devices Blender reports (`ask_blender`), or the fake list when the env has one."""
    fake = env.get(FAKE_ENV, "")
    if fake:
        return fake_devices(fake)
    return from_blender(ask_blender())


def parse_gpus(text: str) -> tuple[int, ...] | None:
    """`--gpus`: "all" (None) or indices such as "0,2"; BadInput otherwise."""
    text = text.strip().lower()
    if text in {"", "all"}:
        return None
    picked: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise BadInput(f"--gpus {text!r}: give 'all' or device numbers such as 0,2")
        if int(part) not in picked:
            picked.append(int(part))
    return tuple(picked)


def check_device(choice: str) -> str:
    """`--device`, lower-cased; BadInput when it is none of DEVICE_CHOICES."""
    device = choice.strip().lower()
    if device not in DEVICE_CHOICES:
        raise BadInput(f"--device {choice!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    return device


def plan_slots(devices: list[Device], device: str, gpus: str, cpu_slot: bool) -> Plan:
    """The node's slots; BlendfarmError (one line, said at start) for a backend named but
    absent or a GPU number it does not have."""
    device = check_device(device)
    picked = parse_gpus(gpus)
    if device == "cpu":
        return Plan("CPU", (Slot(0, None),))
    if device == "auto":
        backend = next((b for b in BACKENDS if any(d.backend == b for d in devices)), "")
        if not backend:
            return Plan("CPU", (Slot(0, None),))
    else:
        backend = device.upper()
    mine = [d for d in devices if d.backend == backend]
    if not mine:
        others = sorted({d.backend for d in devices})
        seen = f" (Blender reports {', '.join(others)})" if others else ""
        raise BlendfarmError(
            f"no {BACKEND_NAMES[backend]} device found{seen}: "
            "choose another --device, or --device cpu"
        )
    if picked is not None:
        by_index = {d.index: d for d in mine}
        missing = [i for i in picked if i not in by_index]
        if missing:
            have = ", ".join(str(d.index) for d in mine)
            raise BlendfarmError(
                f"--gpus {gpus}: there is no {BACKEND_NAMES[backend]} device "
                f"{missing[0]} (this node has {have})"
            )
        mine = [by_index[i] for i in picked]
    slots = [Slot(n, d) for n, d in enumerate(mine)]
    if cpu_slot:
        slots.append(Slot(len(slots), None))
    return Plan(backend, tuple(slots))
