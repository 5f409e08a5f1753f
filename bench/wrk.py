"""Driving a server with wrk (pinned to the load core) and reading back what it measured.

Each workload is a Lua script beside this file; ``bench/common.lua`` makes wrk print one
``BENCH_RESULT {json}`` line at the end, which ``run`` parses. While wrk runs, the server's
CPU time and core 1's busy time are sampled, so every result also says how much of the
core the server had and how much CPU each request cost it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.servers import BENCH, LOAD_CORE, SERVER_CORE, Server, pinned

WORKLOADS = (
    "create", "get", "list", "adjust", "update", "mixed", "idempotent", "replay", "batch", "feed",
)  # fmt: skip


@dataclass(frozen=True)
class Result:
    """One wrk run against one server."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    max_us: int
    status_errors: int
    socket_errors: int
    server_cpu_s: float
    core_busy_s: float
    operations_per_request: int = 1
    """Operations each request carried (10 for a ``batch`` of 10 adjustments)."""

    @property
    def seconds(self) -> float:
        return self.duration_us / 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def operations_per_second(self) -> float:
        return self.rps * self.operations_per_request

    @property
    def cpu_share(self) -> float:
        """The fraction of the run's wall time the server spent on a CPU."""
        return self.server_cpu_s / self.seconds

    @property
    def core_busy(self) -> float:
        """The fraction of the run during which the server core was busy (anyone's work)."""
        return self.core_busy_s / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(self.requests, 1) * 1e6

    @property
    def failed(self) -> int:
        """Answers that were not 2xx/3xx, plus socket errors and timeouts."""
        return self.status_errors + self.socket_errors


def core_busy_seconds(core: str = SERVER_CORE) -> float:
    """Busy (not idle, not iowait) time of ``core`` since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(value) for value in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def run(
    workload: str,
    server: Server,
    token: str,
    pool: Path,
    tag: str,
    connections: int,
    duration: int,
) -> Result:
    """Run ``bench/<workload>.lua`` against ``server`` for ``duration`` (whole) seconds."""
    command = pinned(LOAD_CORE, [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(BENCH / f"{workload}.lua"), server.url, "--", token, str(pool), tag,
    ])  # fmt: skip
    cpu_before, busy_before = server.cpu_seconds(), core_busy_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu, busy = server.cpu_seconds() - cpu_before, core_busy_seconds() - busy_before
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            fields = json.loads(line.removeprefix("BENCH_RESULT "))
            return Result(**fields, server_cpu_s=cpu, core_busy_s=busy)
    raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def version() -> str:
    """wrk's version line."""
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip()
