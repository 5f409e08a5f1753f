"""Where a server's CPU went during one run: py-spy's samples by function (``BENCH_PROFILE=1``).

py-spy attaches from outside to the running server and its worker processes and reads
their stacks 100 times a second; the server runs unchanged (no profiler inside it). It
runs pinned to the load core, beside wrk, so it takes nothing from the server's core.
``recording`` samples the server while a workload runs; ``top`` reads py-spy's raw
output (one line per distinct stack with its sample count) and ranks functions by own
time: the samples in which a function was the innermost Python frame. Time in C code
(sqlite3, json, asyncpg's protocol) counts for the Python function that called it.

Only samples of a thread holding the GIL count (``--gil``): Python's own work, which on the
one core a service gets is what its throughput is made of. Without it, py-spy here took
threads blocked on a queue for busy ones (aiosqlite's idle thread and the SQLite writer's
made 55% of a get's samples: a false lead, followed once); the price is that C code that
releases the GIL (a SQLite statement stepping, hashing) counts for nobody.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import BIN, LOAD_CORE, Server, pinned

TOP = 8


@dataclass(frozen=True)
class Hotspot:
    """A function (``name (file)``, as py-spy names it) and its share of the busy samples."""

    function: str
    share: float


@dataclass
class Profile:
    """What py-spy saw during one run, or why it saw nothing."""

    samples: int = 0
    hotspots: list[Hotspot] = field(default_factory=list)
    error: str | None = None


def executable() -> str | None:
    """py-spy from the project's .venv (where ``bench/run`` installs it), else from PATH."""
    return shutil.which("py-spy", path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))


@contextmanager
def recording(server: Server, work: Path, name: str) -> Iterator[Profile]:
    """Sample ``server`` (with its subprocesses) for the duration of the block.

    The ``Profile`` yielded is filled in when the block ends; if py-spy cannot attach (it
    needs ptrace rights over the server), its ``error`` says why and the block still runs.
    """
    raw, log = work / f"{name}.raw", work / f"{name}.py-spy.log"
    spy = executable()
    profile = Profile(error=None if spy else "py-spy is not installed")
    if spy is None:
        yield profile
        return
    command = [
        spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--nolineno",
        "--gil", "--format", "raw", "--output", str(raw),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(pinned(LOAD_CORE, command), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_sampling(process, log)
        yield profile
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            process.wait(timeout=60)
    if raw.exists():
        profile.samples, profile.hotspots = top(raw)
    else:
        lines = log.read_text(errors="replace").splitlines()
        profile.error = next((line for line in lines if "Error" in line), "no output; see log")


def _wait_until_sampling(process: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if "Sampling process" in log.read_text(errors="replace"):
            return
        time.sleep(0.05)


def top(raw: Path, count: int = TOP) -> tuple[int, list[Hotspot]]:
    """The number of samples in py-spy's raw output and its ``count`` functions by own time."""
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if stack and not leaf.startswith("process "):  # a process with no Python frame
            own[leaf] += int(samples)
    total = sum(own.values())
    return total, [Hotspot(name, n / total) for name, n in own.most_common(count) if total]
