"""docs/PERFORMANCE.md from bench/results/*.json: a table per case, the targets beside.

    .venv/bin/python bench/report.py [--results bench/results] [--out docs/PERFORMANCE.md]

Reads run.json (written by run_all.py: exit code and load averages of every case) and each
case's own file (scaling.json, tiles.json, straggler.json: see record.py; load.json and
load-render1.json from load.py; transfer.json from transfer.py). A case that failed, or whose
file is missing, shows as failed with the reason, never with a number. Prints the report.
Standard library only; `render()` is the pure part.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
Data = Mapping[str, Any]

RERUN = """## Re-running

```sh
make bench                                # every case below, then this file (~12-25 min)
.venv/bin/python bench/run_all.py --only scaling,tiles   # some cases, then this file
.venv/bin/python bench/run_all.py --quick # scaling with bpy only
.venv/bin/python bench/scaling.py         # one case alone: writes bench/results/scaling.json
.venv/bin/python bench/report.py          # this file again from bench/results/*.json
```

Each case starts its own `blendfarm serve` and nodes on 127.0.0.1 with free ports and a
temporary dir, and stops them. The machine is shared with other developers (their test
suites run Blender and Chromium on the same cores), so every case records the load average
(1, 5, 15 minutes) before and after it: compare ratios, and runs made under similar load.
See bench/README.md for what each case does.
"""


def num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:.{digits}f}"


def loads(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " / ".join(num(v) for v in value)
    return num(value)


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def outcome(name: str, data: Data | None, run: Data) -> str | None:
    """Why the case counts as failed (None: it worked)."""
    entry = run.get("cases", {}).get(name, {})
    if entry.get("error"):
        if entry.get("exit") is None and "not in this tree" in entry["error"]:
            return f"not run: {entry['error']}"
        return f"failed: {entry['error']}" + (
            f" ({data['error']})" if data and data.get("error") else ""
        )
    if data is None:
        return "not run (no result file)" if not entry else "failed: it wrote no result file"
    if data.get("ok") is False:
        return f"failed: {data.get('error') or 'see its record'}"
    if isinstance(data.get("errors"), int) and data["errors"] > 0:
        return f"failed: {data['errors']} errors ({data.get('errors_by_kind')})"
    return None


def ran_after(date: str, entry: Data) -> bool:
    """Whether a case's own record (its `date`) was made after the runner's run of it ended."""
    try:
        own = datetime.fromisoformat(date.replace("Z", "+00:00"))
        start = datetime.fromisoformat(str(entry["started"]).replace("Z", "+00:00"))
        return own > start + timedelta(seconds=float(entry.get("seconds") or 0))
    except (KeyError, ValueError, TypeError):
        return False


def header(name: str, data: Data | None, run: Data) -> list[str]:
    """The date and the load around the case (the runner's figures first)."""
    entry = run.get("cases", {}).get(name, {})
    if ran_after(str((data or {}).get("date") or ""), entry):
        entry = {}  # the case was run again alone after `make bench`: its own figures
    date = entry.get("started") or (data or {}).get("date") or "—"
    before = entry.get("loadavg_before", (data or {}).get("loadavg_before"))
    after = entry.get("loadavg_after", (data or {}).get("loadavg_after"))
    took = entry.get("seconds", (data or {}).get("seconds"))
    lines = [
        f"Run {date}; load average (1/5/15 min) {loads(before)} before, {loads(after)} after"
        + (f"; took {num(took, 0)} s." if took is not None else ".")
    ]
    cores = (run.get("machine") or (data or {}).get("machine") or {}).get("cores")
    busiest = max((first(x) for x in (before, after) if first(x) is not None), default=None)
    if isinstance(cores, int) and busiest is not None and busiest > cores:
        lines.append(
            f"The load average ({num(busiest)}) was above the {cores} cores: other work took "
            "CPU from every render here, plain Blender's `-t 2` gained little over `-t 1`, "
            "and two processes got a larger share of the machine than one. Read these "
            "figures as that run's, not as the farm's own cost."
        )
    return lines


def first(value: Any) -> float | None:
    """The 1-minute figure of a load average (a list of three, or one number)."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return float(value) if isinstance(value, int | float) else None


def scaling(data: Data) -> list[str]:
    config: Data = data.get("config", {})
    figures: dict[str, Any] = dict(data.get("figures", {}))
    for spec in config.get("blenders", []):  # a Blender the case never reached
        tag = "bpy" if spec == "bpy" else Path(spec).name
        figures.setdefault(tag, {"error": "not measured (the case stopped before it)"})
    tags = list(figures)
    lines = [
        f"Scene: {config.get('width')}×{config.get('height')}, Cycles (a textured plane, "
        f"a linked library), {config.get('samples')} samples, {config.get('frames')} frames, "
        f"1×1 chunks; every node `--threads 1`. Cold: the first project on fresh nodes; warm: "
        "a second, identical project right after. Times run from `blendfarm submit` to `done`.",
        "",
    ]
    columns = [str(figures[t].get("blender", t)) for t in tags]

    def row(label: str, get: Callable[[Data], Any], target: str = "", digits: int = 2) -> None:
        cells = []
        for tag in tags:
            found = figures[tag]
            cells.append("failed" if "error" in found else num(get(found), digits))
        rows.append([label, *cells, target])

    rows: list[list[str]] = []
    farm = lambda key: lambda f: f.get("farm", {}).get(key, {}).get("wall_s")  # noqa: E731
    ratio = lambda key: lambda f: f.get("ratios", {}).get(key)  # noqa: E731
    row("plain `-t 1 -a`, s", lambda f: f.get("plain_t1_s"))
    row("plain `-t 2 -a`, s", lambda f: f.get("plain_t2_s"))
    row("machine ceiling (`-t 1` / `-t 2`)", lambda f: f.get("ceiling"))
    for nodes in (1, 2):
        for mode in ("cold", "warm"):
            row(f"{nodes} node{'s' if nodes > 1 else ''}, {mode}, s", farm(f"{nodes} {mode}"))
    row("one node / plain `-t 1`, cold", ratio("one_node_vs_plain_cold"))
    row("**one node / plain `-t 1`, warm**", ratio("one_node_vs_plain_warm"), "≤ 1.05")
    row("two nodes' speed-up over one, cold", ratio("two_vs_one_cold"))
    row("two nodes' speed-up over one, warm", ratio("two_vs_one_warm"))
    row(
        "**speed-up / ceiling, warm**",
        ratio("two_vs_one_share_of_ceiling_warm"),
        "≥ 0.9",
    )
    targets = []
    for tag in tags:
        met = figures[tag].get("targets_met")
        if met:
            targets.append(
                f"one node: {verdict(met['one_node_vs_plain'])}, "
                f"two vs one: {verdict(met['two_vs_one'])}"
            )
        else:
            targets.append("—")
    rows.append(["targets", *targets, ""])
    lines += table(["", *columns, "target"], rows)
    for tag in tags:
        if "error" in figures[tag]:
            lines += ["", f"{tag} failed: {one_line(figures[tag]['error'])}"]
    return lines


def tiles(data: Data) -> list[str]:
    figures: Data = data.get("figures", {})
    config: Data = data.get("config", {})
    lines = [
        f"{figures.get('blender', config.get('blender'))}; one node (all cores, warm "
        f"sessions); a {config.get('width')}×{config.get('height')} still, "
        f"{config.get('samples')} samples; medians of {config.get('rounds')} rounds, each "
        "tiling a new project after a warm-up one. Plain `blender -b -f 1`: "
        f"{num(figures.get('plain_s'))} s.",
        "",
    ]
    rows = []
    for name, entry in figures.get("farm", {}).items():
        rows.append(
            [
                name,
                str(entry.get("chunks")),
                num(entry.get("wall_s")),
                num(entry.get("vs_plain")),
                num(entry.get("per_extra_chunk_s"), 3),
            ]
        )
    lines += table(["tiling", "chunks", "farm s", "× plain", "s per extra chunk"], rows)
    lines += [
        "",
        "Target: none in issue 10 for this case; it shows what a chunk costs on top of its "
        "render (the farm's whole cost against plain Blender is in the scaling case).",
    ]
    return lines


def straggler(data: Data) -> list[str]:
    figures: Data = data.get("figures", {})
    config: Data = data.get("config", {})
    lines = [
        f"{figures.get('blender', config.get('blender'))}; a {config.get('width')}×"
        f"{config.get('height')} still, {config.get('samples')} samples, 3×3 chunks; a fast "
        f"node ({config.get('fast_node')}) and a slow one ({config.get('slow_node')}); each "
        "run on a fresh farm, after a warm-up project.",
        "",
    ]
    rows = []
    for mode, label in (("0", "without"), ("1", "with")):
        entry = figures.get(f"duplicates_{mode}")
        if entry is None:
            why = (
                "not measured: the server has no BLENDFARM_DUPLICATES setting"
                if figures.get("setting_exists") is False
                else "not measured"
            )
            rows.append([f"{label} (`BLENDFARM_DUPLICATES={mode}`)", why, "", ""])
            continue
        renders = ", ".join(
            f"{node} {count}"
            for node, count in sorted((entry.get("renders_by_node") or [{}])[0].items())
        )
        rows.append(
            [f"{label} (`BLENDFARM_DUPLICATES={mode}`)", num(entry.get("wall_s")), renders, ""]
        )
    ratio = figures.get("with_vs_without")
    target = "< 1" if ratio is None else f"< 1: {verdict(ratio < 1)}"
    rows.append(["with / without", num(ratio), "", target])
    lines += table(["duplicate rule", "time to result, s", "chunk renders", "target"], rows)
    return lines


def load(data: Data, saturated: bool) -> list[str]:
    config: Data = data.get("config", {})
    lat: Data = data.get("latency", {})
    accepted = data.get("chunks_accepted") or 0
    cpu_ms = 1000 * data["server_cpu_s"] / accepted if accepted and "server_cpu_s" in data else None
    lines = [
        f"{config.get('nodes')} simulated nodes for {num(config.get('seconds'), 0)} s, "
        f"{config.get('projects')} projects, render time {num(config.get('render_time_s'))} s "
        "per chunk (no Blender).",
        "",
    ]
    rows = [
        ["chunks completed / s", num(data.get("chunks_per_s"), 1), "≥ 1000" if saturated else ""],
        ["tasks handed out / s", num(data.get("tasks_per_s"), 1), ""],
        ["server CPU s per wall s", num(data.get("server_cpu_share")), ""],
        ["load script CPU s per wall s", num(data.get("client_cpu_share")), ""],
        ["server CPU ms per chunk", num(cpu_ms), ""],
        [
            "p99 lease / result, ms, the whole run",
            f"{num(lat.get('lease', {}).get('p99_ms'), 0)} / "
            f"{num(lat.get('result', {}).get('p99_ms'), 0)}",
            "",
        ],
        [
            "tasks that came with a result's answer (no lease request)",
            str(data.get("next_with_result", "—")),
            "",
        ],
    ]
    targets: Data = data.get("targets", {})
    steady = [targets.get(f"p99_{kind}_ms") or {} for kind in ("lease", "result")]
    if not saturated:
        after = steady[1].get("after_s")
        shown = [
            "— (none)" if not entry.get("requests") else num(entry.get("value"), 0)
            for entry in steady
        ]
        rows.append(
            [
                f"p99 lease / result, ms, every node in its loop (requests after {num(after, 0)} s:"
                f" {steady[0].get('requests', 0)} / {steady[1].get('requests', 0)})",
                " / ".join(shown),
                "≤ 50",
            ]
        )
    rows += [
        ["errors", str(data.get("errors", "—")), "0"],
    ]
    still: Data = data.get("still") or {}
    if still.get("result_after_last_chunk_s") is not None:
        rows.append(
            [
                "a still's result downloadable after its last chunk, s",
                num(still["result_after_last_chunk_s"]),
                "~1",
            ]
        )
    idle: Data = data.get("idle") or {}
    if idle.get("server_cpu_share") is not None:
        rows.append(
            [
                f"server CPU with {idle.get('nodes')} idle nodes long-polling, % of a core",
                num(100 * idle["server_cpu_share"], 1),
                "< 2",
            ]
        )
    if saturated:
        rate = data.get("chunks_per_s")
        met = isinstance(rate, int | float) and rate >= 1000
        rows.append(["target", verdict(met), ""])
    else:
        met = bool(steady[1].get("requests")) and all(entry.get("met") for entry in steady)
        rows.append(["target", verdict(met), ""])
    return lines + table(["measure", "value", "target"], rows)


def transfer(data: Data) -> list[str]:
    lines = [
        "Targets (issue 10): uploads and downloads of 1 GiB at ≥ 200 MB/s on loopback, the "
        "server's memory growing by ≤ 64 MiB. The figures as transfer.py wrote them:",
        "",
    ]
    rows = []
    skip = {"date", "machine", "loadavg_before", "loadavg_after", "config", "ok", "error"}
    for key, value in flatten(data):
        if key.split(".")[0] not in skip and isinstance(value, int | float | bool | str):
            rows.append([f"`{key}`", str(value)])
    return lines + table(["figure", "value"], rows)


def flatten(data: Data, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            found += flatten(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def complete_parts(data: Data) -> bool:
    """A case measured per Blender (scaling) keeps the Blenders it finished when a later one
    fails or runs out of time."""
    figures = data.get("figures")
    return (
        data.get("case") == "scaling"
        and isinstance(figures, Mapping)
        and any(isinstance(f, Mapping) and "ratios" in f for f in figures.values())
    )


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:400]


SECTIONS: tuple[tuple[str, str, Callable[[Data], list[str]]], ...] = (
    ("scaling", "Scaling: one node vs plain Blender, two nodes vs one", scaling),
    ("tiles", "Tile overhead: a still in 1×1, 2×2, 4×4 chunks", tiles),
    ("straggler", "Straggler: a 3×3 still with one slow node", straggler),
    ("load", "Load: the server saturated (`bench/load.py`)", lambda d: load(d, True)),
    (
        "load-render1",
        "Load: nodes rendering ~1 s per chunk (`bench/load.py --render-time 1`)",
        lambda d: load(d, False),
    ),
    ("transfer", "Transfer: uploads and downloads (`bench/transfer.py`)", transfer),
)


def render(results: Mapping[str, Data | None], run: Data) -> str:
    """The whole report: `results` maps a case name to its JSON (None when missing)."""
    machine = run.get("machine") or next(
        (d["machine"] for d in results.values() if d and isinstance(d.get("machine"), dict)), {}
    )
    lines = [
        "# Performance",
        "",
        "Written by `bench/report.py` from `bench/results/*.json` (`make bench`); do not edit "
        "by hand. Targets are issue 10's.",
        "",
        f"Machine: {machine.get('cpu') or 'unknown CPU'}, {machine.get('cores', '?')} cores, "
        f"{num(machine.get('ram_gib'), 1)} GiB RAM"
        + (f"; last `make bench` {run['date']}" if run.get("date") else "")
        + (f", {num(run.get('seconds'), 0)} s in all." if run.get("seconds") else "."),
    ]
    for name, title, section in SECTIONS:
        data = results.get(name)
        lines += ["", f"## {title}", ""]
        lines += header(name, data, run)
        lines.append("")
        why = outcome(name, data, run)
        if why is not None:
            lines.append(f"**{one_line(why)}**")
            if not (data and complete_parts(data)):
                continue
            lines += ["", "What it finished before that (the rest shows as failed):", ""]
        assert data is not None
        try:
            lines += section(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            lines.append(f"**failed: its result file cannot be read ({exc!r})**")
    lines += ["", RERUN]
    return "\n".join(lines)


def read_results(folder: Path) -> tuple[dict[str, Data | None], Data]:
    def read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    results = {name: read(folder / f"{name}.json") for name, _, _ in SECTIONS}
    return results, read(folder / "run.json") or {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "PERFORMANCE.md")
    args = parser.parse_args()
    results, run = read_results(args.results)
    text = render(results, run)
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
