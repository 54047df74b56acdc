"""bench/report.py renders docs/PERFORMANCE.md from the benches' JSON (no bench is run)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_report"] = module
    spec.loader.exec_module(module)
    return module


MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "ram_gib": 7.8}


def scaling_result(ok: bool = True) -> dict:
    bpy = {
        "blender": "5.0.1 (bpy)",
        "plain_t1_s": 40.0,
        "plain_t2_s": 25.0,
        "ceiling": 1.6,
        "farm": {
            "1 cold": {"wall_s": 48.0},
            "1 warm": {"wall_s": 41.0},
            "2 cold": {"wall_s": 30.0},
            "2 warm": {"wall_s": 27.5},
        },
        "ratios": {
            "one_node_vs_plain_cold": 1.2,
            "one_node_vs_plain_warm": 1.025,
            "two_vs_one_cold": 1.6,
            "two_vs_one_warm": 1.491,
            "two_vs_one_share_of_ceiling_cold": 1.0,
            "two_vs_one_share_of_ceiling_warm": 0.932,
        },
        "targets_met": {"one_node_vs_plain": True, "two_vs_one": True},
    }
    return {
        "case": "scaling",
        "ok": ok,
        "error": None if ok else "RuntimeError: the server did not answer",
        "date": "2026-11-28T10:00:00Z",
        "machine": MACHINE,
        "loadavg_before": [1.5, 1.2, 1.0],
        "loadavg_after": [2.5, 1.4, 1.1],
        "config": {"width": 240, "height": 180, "samples": 64, "frames": 12},
        "figures": {"bpy": bpy, "blender": {"error": "RuntimeError: Blender exited 1"}},
    }


def test_a_scaling_result_becomes_a_table_with_its_targets(report: ModuleType) -> None:
    text = report.render({"scaling": scaling_result()}, {})

    assert "## Scaling" in text
    assert "Test CPU 9000, 2 cores, 7.8 GiB RAM" in text
    assert "| plain `-t 1 -a`, s | 40.00 | failed |  |" in text
    assert "| **one node / plain `-t 1`, warm** | 1.02 | failed | ≤ 1.05 |" in text
    assert "| **speed-up / ceiling, warm** | 0.93 | failed | ≥ 0.9 |" in text
    assert "1.50 / 1.20 / 1.00 before, 2.50 / 1.40 / 1.10 after" in text
    assert "blender failed: RuntimeError: Blender exited 1" in text


def test_a_failed_case_shows_as_failed_and_never_as_a_number(report: ModuleType) -> None:
    tiles = {
        "case": "tiles",
        "ok": False,
        "error": "RuntimeError: the server did not answer",
        "config": {},
        "figures": {"plain_s": 40.0, "farm": {"1x1": {"chunks": 1, "wall_s": 41.0}}},
    }
    text = report.render({"tiles": tiles}, {})
    section = text.split("## Tile overhead")[1].split("## ")[0]

    assert "**failed: RuntimeError: the server did not answer**" in section
    assert "40.00" not in section and "41.00" not in section


def test_a_case_the_runner_saw_fail_is_failed_even_with_an_old_file(report: ModuleType) -> None:
    load = {"chunks_per_s": 132.4, "errors": 0, "config": {}, "latency": {}}
    run = {"cases": {"load": {"exit": 1, "error": "exited 1", "loadavg_before": [3, 2, 1]}}}

    section = report.render({"load": load}, run).split("## Load: the server")[1].split("## ")[0]

    assert "**failed: exited 1**" in section
    assert "132.4" not in section


def test_load_errors_fail_the_case_and_a_missing_file_is_not_run(report: ModuleType) -> None:
    load = {"chunks_per_s": 132.4, "errors": 3, "errors_by_kind": {"result": 3}}

    text = report.render({"load": load, "transfer": None}, {})

    assert "**failed: 3 errors ({'result': 3})**" in text
    assert "132.4" not in text
    assert "## Transfer" in text.split("**not run (no result file)**")[-2]


def test_the_saturated_load_target_is_judged(report: ModuleType) -> None:
    load = {
        "config": {"nodes": 200, "seconds": 30, "projects": 20, "render_time_s": 0},
        "chunks_per_s": 1200.0,
        "chunks_accepted": 36000,
        "server_cpu_s": 18.0,
        "server_cpu_share": 0.6,
        "latency": {"lease": {"p99_ms": 20.0}, "result": {"p99_ms": 30.0}},
        "errors": 0,
    }

    text = report.render({"load": load}, {})

    assert "| chunks completed / s | 1200.0 | ≥ 1000 |" in text
    assert "| server CPU ms per chunk | 0.50 |  |" in text
    assert "| target | met |  |" in text


def test_the_report_is_written_from_a_results_folder(
    report: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scaling.json").write_text(json.dumps(scaling_result()))
    (tmp_path / "run.json").write_text(json.dumps({"machine": MACHINE, "cases": {}}))
    out = tmp_path / "PERFORMANCE.md"
    monkeypatch.setattr(sys, "argv", ["report.py", "--results", str(tmp_path), "--out", str(out)])

    assert report.main() == 0
    assert "| 1 node, warm, s | 41.00 | failed |  |" in out.read_text()


def test_a_scaling_run_stopped_midway_keeps_the_blender_it_finished(report: ModuleType) -> None:
    data = scaling_result(ok=False)
    data["config"]["blenders"] = ["bpy", "/usr/bin/blender"]
    del data["figures"]["blender"]
    run = {"cases": {"scaling": {"exit": None, "error": "stopped after its time limit"}}}

    section = report.render({"scaling": data}, run).split("## Scaling")[1].split("## ")[0]

    assert "**failed: stopped after its time limit" in section
    assert "| plain `-t 1 -a`, s | 40.00 | failed |  |" in section
    assert "blender failed: not measured (the case stopped before it)" in section


def test_a_run_under_more_load_than_cores_is_flagged(report: ModuleType) -> None:
    calm = scaling_result()
    calm["loadavg_after"] = [1.8, 1.4, 1.1]
    quiet = report.render({"scaling": calm}, {})
    busy = scaling_result()
    busy["loadavg_after"] = [9.5, 6.0, 3.0]

    assert "was above the 2 cores" not in quiet
    assert "The load average (9.50) was above the 2 cores" in report.render({"scaling": busy}, {})
