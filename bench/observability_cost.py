"""What logs and metrics cost on the hot path: get throughput with each on and off, in one run.

Three ``inventory serve`` processes on SQLite files of their own, all started at once, each
pinned to core 1 like every server of ``bench/run`` and idle except while measured:
``quiet`` (``--log-level warning``: no access lines, no metrics), ``logs`` (the default:
one JSON access line per request) and ``logs+metrics`` (the same with ``--metrics-port``).
wrk runs the ``get`` workload on core 0 against each in turn, round after round, so a
neighbour's load falls on all three alike; the report gives each one's median and the
ratios. Run: ``.venv/bin/python -m bench.observability_cost`` (``BENCH_DURATION`` seconds
per run, 5; ``BENCH_ROUNDS``, 3; ``BENCH_CONNECTIONS``, 16).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import servers, wrk

CONFIGS = {
    "quiet": ["--log-level", "warning"],
    "logs": [],
    "logs+metrics": ["--metrics-port", str(servers.free_port())],
}


def _start(work: Path, stack: ExitStack, name: str, flags: list[str]) -> tuple[servers.Server, str]:
    url = f"sqlite:///{work / (name.replace('+', '-') + '.db')}"
    token = servers.create_key(url)
    command = [str(servers.BIN / "inventory"), "serve", "--database", url, *flags]
    server = servers.start(name, command, work / f"{name}.log")
    stack.callback(server.stop)
    return server, token


def main() -> None:
    duration = int(os.environ.get("BENCH_DURATION", "5"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "16"))
    results: dict[str, list[wrk.Result]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="inventory-obs-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        started = {name: _start(work, stack, name, flags) for name, flags in CONFIGS.items()}
        pools = {}
        for name, (server, token) in started.items():
            pools[name] = work / f"{name}-ids.txt"
            pools[name].write_text("\n".join(servers.seed(server, token, 200)) + "\n")
            wrk.run("get", server, token, pools[name], "warmup", connections, 2)
        for round_ in range(rounds):
            for name, (server, token) in started.items():
                result = wrk.run("get", server, token, pools[name], f"r{round_}", connections,
                                 duration)  # fmt: skip
                results[name].append(result)
                print(f"{name:13} round {round_}: {result.rps:8,.0f} req/s "
                      f"{result.cpu_us_per_request:6.0f} µs/req  failed {result.failed}",
                      file=sys.stderr, flush=True)  # fmt: skip
    _report(results, duration, connections)


def _report(results: dict[str, list[wrk.Result]], duration: int, connections: int) -> None:
    rps = {name: statistics.median(r.rps for r in runs) for name, runs in results.items()}
    cpu = {
        name: statistics.median(r.cpu_us_per_request for r in runs)
        for name, runs in results.items()
    }
    print(f"get, {connections} connections, {duration} s per run, median of "
          f"{len(results['quiet'])} rounds")  # fmt: skip
    for name in results:
        print(f"  {name:13} {rps[name]:8,.0f} req/s  {cpu[name]:5.0f} µs CPU per request")
    print(f"  metrics on / off (logs+metrics / logs): {rps['logs+metrics'] / rps['logs']:.3f}"
          f" by req/s, {cpu['logs'] / cpu['logs+metrics']:.3f} by CPU cost")  # fmt: skip
    print(f"  access log on / off (logs / quiet):     {rps['logs'] / rps['quiet']:.3f}"
          f" by req/s, {cpu['quiet'] / cpu['logs']:.3f} by CPU cost")  # fmt: skip


if __name__ == "__main__":
    main()
