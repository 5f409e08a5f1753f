"""The benchmark of the README's "Performance" section: the service against an echo app.

Started by ``bench/run``. Every server (the echo app, the service on SQLite, the service
on PostgreSQL with two workers) runs at once, pinned to core 1, and is idle except while
it is measured; wrk runs on core 0. For each workload and connection count the servers
are measured one right after the other, so a neighbour's load on the machine falls on
all of them alike. What the ``replay`` and ``feed`` workloads read (stored answers, a
feed of events) is made through the API before the warm-up (bench/preload.py). Prints
Markdown and saves it to bench/results.md.

Settings (environment): BENCH_DURATION seconds per run (10), BENCH_CONNECTIONS ("16 64"),
BENCH_BACKENDS ("sqlite postgres"), BENCH_WORKLOADS (all), BENCH_WARMUP seconds (2),
BENCH_SEED items created before the runs (200), BENCH_POSTGRES (the maintenance URL),
BENCH_PROFILE=1 (after the measured runs, one more run of each workload per service with
py-spy attached, for the report's "where the CPU went").
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import hotspots, preload, report, servers, wrk
from bench.hotspots import Profile
from bench.report import Cell
from bench.wrk import Result


@dataclass(frozen=True)
class Settings:
    """What one ``bench/run`` measures."""

    duration: int
    connections: tuple[int, ...]
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    warmup: int
    seed: int
    profile: bool

    @classmethod
    def from_environment(cls) -> Settings:
        env = os.environ.get
        return cls(
            duration=int(env("BENCH_DURATION", "10")),
            connections=tuple(int(c) for c in env("BENCH_CONNECTIONS", "16 64").split()),
            backends=tuple(env("BENCH_BACKENDS", "sqlite postgres").split()),
            workloads=tuple(env("BENCH_WORKLOADS", " ".join(wrk.WORKLOADS)).split()),
            warmup=int(env("BENCH_WARMUP", "2")),
            seed=int(env("BENCH_SEED", "200")),
            profile=env("BENCH_PROFILE", "") == "1",
        )


@dataclass(frozen=True)
class Target:
    """A server under test, its key, its existing item ids and the feed positions to read."""

    server: servers.Server
    token: str
    items: Path
    positions: Path

    def pool(self, workload: str) -> Path:
        """What ``workload``'s script picks from: feed positions for ``feed``, else item ids."""
        return self.positions if workload == "feed" else self.items


def _target(settings: Settings, server: servers.Server, token: str, work: Path) -> Target:
    """Seed items (fake ids for echo), then preload what the selected workloads read."""
    length = preload.FEED_EVENTS
    if server.name == "echo":
        ids = [str(uuid.uuid4()) for _ in range(settings.seed)]
    else:
        ids = servers.seed(server, token, settings.seed)
        if "replay" in settings.workloads:
            preload.prime_replays(server, token, ids)
        if "feed" in settings.workloads:
            length = preload.fill_feed(server, token, ids)
    items = work / f"{server.name}-ids.txt"
    items.write_text("\n".join(ids) + "\n")
    positions = preload.write_positions(work / f"{server.name}-feed.txt", length)
    return Target(server, token, items, positions)


def _start_targets(settings: Settings, work: Path, stack: ExitStack) -> dict[str, Target]:
    echo = servers.start_echo(work / "echo.log")
    stack.callback(echo.stop)
    targets = {"echo": _target(settings, echo, "ignored-by-echo", work)}
    for backend in settings.backends:
        if backend == "sqlite":
            url, name, workers = f"sqlite:///{work / 'bench.db'}", "SQLite", 1
        elif backend == "postgres":
            url, name, workers = servers.create_postgres_database(), "PostgreSQL", 2
            stack.callback(servers.drop_postgres_database, url)
        else:
            sys.exit(f"bench: unknown backend {backend!r} (sqlite, postgres)")
        token = servers.create_key(url)
        server = servers.start_service(name, url, work / f"{backend}.log", workers)
        stack.callback(server.stop)
        targets[name] = _target(settings, server, token, work)
    return targets


def _measure(
    settings: Settings, targets: dict[str, Target]
) -> tuple[list[Cell], dict[str, dict[Cell, Result]]]:
    for target in targets.values():
        if settings.warmup > 0:
            wrk.run(
                "mixed", target.server, target.token, target.items, "warmup", 16, settings.warmup
            )
    cells = [(w, c) for w in settings.workloads for c in settings.connections]
    results: dict[str, dict[Cell, Result]] = {name: {} for name in targets}
    for workload, connections in cells:
        for name, target in targets.items():
            result = wrk.run(
                workload, target.server, target.token, target.pool(workload),
                f"{workload}{connections}", connections, settings.duration,
            )  # fmt: skip
            results[name][(workload, connections)] = result
            print(
                f"bench: {name:10} {workload:10} c={connections:<3} {result.rps:8,.0f} req/s"
                f"  p50 {result.p50_us / 1000:6.2f} ms  p99 {result.p99_us / 1000:6.2f} ms"
                f"  cpu {result.cpu_share:4.0%}  failed {result.failed}",
                file=sys.stderr,
                flush=True,
            )
    return cells, results


def _profile(
    settings: Settings, targets: dict[str, Target], work: Path
) -> dict[str, dict[str, Profile]]:
    """One more run of each workload per service, at the first connection count, under py-spy."""
    connections = settings.connections[0]
    profiles: dict[str, dict[str, Profile]] = {}
    for workload in settings.workloads:
        profiles[workload] = {}
        for name, target in targets.items():
            if name == "echo":
                continue
            with hotspots.recording(target.server, work, f"{name}-{workload}") as profile:
                wrk.run(
                    workload, target.server, target.token, target.pool(workload),
                    f"profile-{workload}", connections, settings.duration,
                )  # fmt: skip
            profiles[workload][name] = profile
            print(
                f"bench: {name:10} {workload:10} profiled: {profile.samples} samples"
                f"{'' if profile.error is None else ', ' + profile.error}",
                file=sys.stderr,
                flush=True,
            )
    return profiles


def _document(
    settings: Settings,
    cells: list[Cell],
    results: dict[str, dict[Cell, Result]],
    memory: dict[str, int],
    profiles: dict[str, dict[str, Profile]],
) -> str:
    services = [name for name in results if name != "echo"]
    extra = {
        "wrk": f"{wrk.version()}, 1 thread, pinned to core {servers.LOAD_CORE}",
        "servers": f"each pinned to core {servers.SERVER_CORE} (taskset -c {servers.SERVER_CORE})",
        "duration": f"{settings.duration} s per run after a {settings.warmup} s warm-up",
        "priority": (
            f"servers and wrk at nice {servers.NICE} (BENCH_NICE), ahead of other processes"
            if servers.NICE
            else "normal (BENCH_NICE unset)"
        ),
    }
    if "PostgreSQL" in results:
        extra["PostgreSQL"] = (
            f"{servers.postgres_version()}; `inventory serve --workers 2`, both workers pinned"
            " to core 1 like everything measured; the PostgreSQL server's own processes are not"
            " pinned (the machine's shared server) and run on either core, so PostgreSQL rows"
            " get more than one core of CPU in all"
        )
    rss = ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in memory.items())
    operations = report.operations_table(cells, results, services)
    return "\n\n".join(
        [
            "# Benchmark: the service against a bare aiohttp echo app",
            report.machine(extra),
            "## Requests/s, latency (ms) and ratio to echo\n\n"
            "SQLite with `synchronous=FULL` (the default): every acknowledged write is fsynced.\n\n"
            + report.results_table(cells, results, services),
            "## Targets (from this run)\n\n" + report.targets(cells, results, services),
            "## Where core 1 went\n\n"
            "Server CPU % is the server processes' CPU time over the run's wall time (100% = the"
            " whole core; the PostgreSQL server's own processes are not counted). Core 1 busy %"
            " is anyone's work on that core: well above server CPU %, a neighbour took part of"
            " it. Well below 100%, the server sat idle waiting for requests (wake-up latency"
            " between the cores, or the load generator starved), and its requests/s understates"
            " what the core can do. µs per request is the server's CPU cost of one request; the"
            " ratio by CPU cost compares those costs, which is what requests/s would compare"
            " on a quiet machine with the core saturated.\n\n"
            + report.cpu_table(cells, results, services),
            f"Server memory (RSS) after the runs: {rss}.",
            *(["## Operations/s\n\n" + _OPERATIONS + "\n\n" + operations] if operations else []),
            *_where_the_cpu_went(settings, profiles),
        ]
    )


_OPERATIONS = (
    "A `batch` request carries several adjustments (`bench/batch.lua`: 10, of items picked at"
    " random, deltas +1 or -1) applied as one transaction; operations/s is its requests/s"
    " times that, to set beside `adjust` (one adjustment a request, on one hot item)."
)


def _where_the_cpu_went(settings: Settings, profiles: dict[str, dict[str, Profile]]) -> list[str]:
    if not profiles:
        return []
    intro = (
        "## Where the CPU went (py-spy, BENCH_PROFILE=1)\n\n"
        "After the measured runs, one more run of each workload per service at"
        f" {settings.connections[0]} connections, with `py-spy record --subprocesses --gil`"
        " attached to the server from core 0 (100 samples/s; the server is not changed). Each"
        " function's share is of the samples in which a thread held the GIL, counted for the"
        " innermost Python frame: time in C that keeps the GIL (json, asyncpg's protocol)"
        " counts for its Python caller; C that releases it (a SQLite statement stepping)"
        " counts for nobody. Without `--gil`, py-spy here counted idle threads blocked on a"
        " queue as busy."
    )
    return [intro] + [
        f"### {workload}\n\n" + report.hotspots_table(by_service)
        for workload, by_service in profiles.items()
    ]


def main() -> None:
    """Start everything, measure every cell, print and save the report."""
    settings = Settings.from_environment()
    unknown = sorted(set(settings.workloads) - set(wrk.WORKLOADS))
    if unknown:
        sys.exit(f"bench: unknown workload(s) {' '.join(unknown)} ({' '.join(wrk.WORKLOADS)})")
    if settings.profile and hotspots.executable() is None:
        sys.exit("bench: BENCH_PROFILE=1 needs py-spy (bench/run installs it into .venv)")
    with tempfile.TemporaryDirectory(prefix="inventory-bench-") as tmp, ExitStack() as stack:
        targets = _start_targets(settings, Path(tmp), stack)
        cells, results = _measure(settings, targets)
        memory = {name: t.server.rss_bytes() for name, t in targets.items()}
        profiles = _profile(settings, targets, Path(tmp)) if settings.profile else {}
        document = _document(settings, cells, results, memory, profiles) + "\n"
    print(document)
    (servers.BENCH / "results.md").write_text(document)


if __name__ == "__main__":
    main()
