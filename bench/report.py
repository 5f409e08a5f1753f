"""Turning measurements into the Markdown that ``bench/run`` prints and saves.

Three parts: the machine (so a number is never read without its context), the results
table (requests/s, p50/p99, and the ratio service/echo per cell), and the targets of the
issue, each marked met or missed from the same run's numbers. Then the operations/s of
workloads whose requests carry several operations, and, with ``BENCH_PROFILE=1``, the
functions each service spent its CPU in.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.hotspots import Profile
from bench.wrk import Result

Cell = tuple[str, int]  # (workload, connections)


@dataclass(frozen=True)
class Target:
    """A ratio the issue asks of one workload: service req/s >= ``ratio`` x echo req/s."""

    workload: str
    ratio: float


RATIO_TARGETS: Mapping[str, tuple[Target, ...]] = {
    "SQLite": (
        Target("create", 0.5),
        Target("adjust", 0.5),
        Target("get", 0.6),
        Target("list", 0.3),
        Target("mixed", 0.5),
    ),
    "PostgreSQL": (Target("get", 0.3), Target("create", 0.25)),
}
"""The ratios of issue 16 ("Speed II"), items 1 (SQLite) and 2 (PostgreSQL, two workers)."""
P99_TARGET_MS = 25.0
P99_TARGET_CONNECTIONS = 64
P99_TARGET_SERVICES = ("SQLite",)
P99_TARGET_WORKLOADS = ("create", "get", "list", "adjust", "mixed")
"""The workloads the p99 target is set on (SQLite's, item 1); batches and the feed have none."""


def machine(extra: Mapping[str, str]) -> str:
    """A Markdown list describing the machine and the software measured."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "CPU": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "commit": _git_commit(),
        "load average (1/5/15 min)": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        **extra,
    }
    return "\n".join(f"- {name}: {value}" for name, value in facts.items())


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def _ms(microseconds: int) -> str:
    return f"{microseconds / 1000:.2f}"


def _cell(result: Result | None) -> list[str]:
    if result is None:
        return ["-", "-"]
    failed = f" ({result.failed} failed)" if result.failed else ""
    return [f"{result.rps:,.0f}{failed}", f"{_ms(result.p50_us)} / {_ms(result.p99_us)}"]


def _ratio(result: Result | None, echo: Result | None) -> str:
    return f"{result.rps / echo.rps:.2f}" if result and echo else "-"


def results_table(
    cells: Sequence[Cell], results: Mapping[str, Mapping[Cell, Result]], services: Sequence[str]
) -> str:
    """requests/s, p50/p99 (ms) and ratio to echo, one row per workload and connections."""
    head = ["workload", "conns", "echo req/s", "echo p50 / p99 ms"]
    for name in services:
        head += [f"{name} req/s", f"{name} p50 / p99 ms", f"{name} / echo"]
    rows = [head, ["---"] * len(head)]
    for cell in cells:
        echo = results["echo"].get(cell)
        row = [cell[0], str(cell[1]), *_cell(echo)]
        for name in services:
            result = results[name].get(cell)
            row += [*_cell(result), _ratio(result, echo)]
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def cpu_table(
    cells: Sequence[Cell], results: Mapping[str, Mapping[Cell, Result]], services: Sequence[str]
) -> str:
    """Per run: server CPU share, core 1 busy, CPU per request, and the CPU-cost ratio.

    The CPU-cost ratio (echo's CPU µs per request over the service's) is the ratio the
    two would show if each had the whole core busy; unlike requests/s, neither a neighbour
    on the machine nor idle time spent waiting for the load generator moves it.
    """
    head = ["workload", "conns", "echo CPU % / core 1 busy % / µs per req"]
    for name in services:
        head += [f"{name} CPU % / core 1 busy % / µs per req", f"{name} / echo by CPU cost"]
    rows = [head, ["---"] * len(head)]
    for cell in cells:
        echo = results["echo"].get(cell)
        row = [cell[0], str(cell[1]), _cpu(echo)]
        for name in services:
            result = results[name].get(cell)
            cost = (
                f"{echo.cpu_us_per_request / result.cpu_us_per_request:.2f}"
                if echo and result and result.server_cpu_s > 0
                else "-"
            )
            row += [_cpu(result), cost]
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _cpu(result: Result | None) -> str:
    if result is None:
        return "-"
    return f"{result.cpu_share:.0%} / {result.core_busy:.0%} / {result.cpu_us_per_request:,.0f}"


def operations_table(
    cells: Sequence[Cell], results: Mapping[str, Mapping[Cell, Result]], services: Sequence[str]
) -> str:
    """Operations/s of the cells whose requests carry several operations (a batch); "" if none."""
    names = ["echo", *services]
    rows = []
    for cell in cells:
        measured = [results[name].get(cell) for name in names]
        size = max((result.operations_per_request for result in measured if result), default=1)
        if size > 1:
            rows.append([cell[0], str(cell[1]), str(size), *map(_operations, measured)])
    head = ["workload", "conns", "operations a request", *(f"{name} ops/s" for name in names)]
    return _table(head, rows) if rows else ""


def _operations(result: Result | None) -> str:
    return f"{result.operations_per_second:,.0f}" if result else "-"


def hotspots_table(profiles: Mapping[str, Profile]) -> str:
    """Each service's top functions by own time in one run, side by side; then any failure."""
    depth = max((len(profile.hotspots) for profile in profiles.values()), default=0)
    head = ["#", *(f"{name} ({profile.samples:,} samples)" for name, profile in profiles.items())]
    rows = [
        [str(rank + 1), *(_hotspot(profile, rank) for profile in profiles.values())]
        for rank in range(depth)
    ]
    failures = [
        f"- {name}: py-spy recorded nothing: {profile.error}"
        for name, profile in profiles.items()
        if profile.error
    ]
    return "\n\n".join(part for part in (_table(head, rows) if rows else "", *failures) if part)


def _hotspot(profile: Profile, rank: int) -> str:
    if rank >= len(profile.hotspots):
        return ""
    spot = profile.hotspots[rank]
    return f"{spot.share:.1%} `{spot.function}`"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def targets(
    cells: Sequence[Cell], results: Mapping[str, Mapping[Cell, Result]], services: Sequence[str]
) -> str:
    """Each target of the issue, per service and connection count, met or missed."""
    lines = []
    for name in services:
        for target in RATIO_TARGETS.get(name, ()):
            for workload, connections in cells:
                if workload != target.workload:
                    continue
                service = results[name].get((workload, connections))
                echo = results["echo"].get((workload, connections))
                if service is None or echo is None:
                    continue
                ratio = service.rps / echo.rps
                verdict = "met" if ratio >= target.ratio else "MISSED"
                lines.append(
                    f"- {name}, {workload} at {connections} connections: {ratio:.3f}x echo"
                    f" (target >= {target.ratio}x): {verdict}"
                )
        at_64 = [
            (cell, result)
            for cell, result in results[name].items()
            if cell[1] == P99_TARGET_CONNECTIONS and cell[0] in P99_TARGET_WORKLOADS
        ]
        if name not in P99_TARGET_SERVICES:
            at_64 = []
        if at_64:
            (workload, _), worst = max(at_64, key=lambda pair: pair[1].p99_us)
            verdict = "met" if worst.p99_us / 1000 <= P99_TARGET_MS else "MISSED"
            lines.append(
                f"- {name}, worst p99 at {P99_TARGET_CONNECTIONS} connections: {_ms(worst.p99_us)}"
                f" ms ({workload}; target <= {P99_TARGET_MS:g} ms): {verdict}"
            )
    return "\n".join(lines)
