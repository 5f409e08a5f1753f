"""Memory and listing speed with 1,000,000 items: ``.venv/bin/python -m bench.million``.

How the million items get there, fast and through the front door: a generated JSON Lines
export (the format of ``inventory export``) is loaded with ``inventory import`` into a
fresh SQLite file, which validates every record and writes them in one transaction. Then
a writer key is made with ``inventory keys create`` and ``inventory serve`` starts on the
file, pinned to core 1 like in ``bench/run``, with wrk on core 0.

Measured: the server's RSS after start and after the load (target <= 150 MB), and the
latency of ``GET /items?limit=100`` (target p50 <= 5 ms) at 1 connection (the service
time alone) and at 16, for the first page and for pages starting at random cursors.
Prints Markdown and saves it to bench/million.md. BENCH_ITEMS (1000000) and
BENCH_DURATION (10 s per run) change the size.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bench import report, servers, wrk
from model.invariants import name_key
from service.http.cursors import encode_cursor
from service.ids import new_id

TENANT = "bench"
RSS_TARGET_MB = 150
P50_TARGET_MS = 5.0


def item_names(count: int) -> Iterator[str]:
    return (f"item {number:07d}" for number in range(count))


def write_export(out: TextIO, count: int) -> None:
    """An export with ``count`` items of one tenant (and no keys)."""
    out.write(json.dumps({"type": "inventory-export", "version": 1}) + "\n")
    stamp = "2026-01-01T00:00:00.000000Z"
    rng = random.Random(1)
    for name in item_names(count):
        record = {
            "type": "item", "tenant": TENANT, "id": new_id(), "name": name,
            "qty": rng.randrange(10_000), "version": 1, "created_at": stamp, "updated_at": stamp,
        }  # fmt: skip
        out.write(json.dumps(record) + "\n")


def load(database_url: str, count: int, work: Path) -> dict[str, float]:
    """Generate the export and import it; how long each step took (s)."""
    export = work / "export.jsonl"
    started = time.monotonic()
    with export.open("w") as out:
        write_export(out, count)
    generated = time.monotonic()
    with export.open() as source:
        subprocess.run(
            [str(servers.BIN / "inventory"), "import", "--database", database_url],
            stdin=source, check=True,
        )  # fmt: skip
    return {"generate": generated - started, "import": time.monotonic() - generated}


def pools(count: int, work: Path, samples: int = 1000) -> tuple[Path, Path]:
    """A file of random cursors (pages starting anywhere) and one of the first-page dummy."""
    rng = random.Random(2)
    names = [f"item {rng.randrange(count):07d}" for _ in range(samples)]
    cursors = work / "cursors.txt"
    cursors.write_text("\n".join(encode_cursor(name_key(name)) for name in names) + "\n")
    unused = work / "unused.txt"
    unused.write_text("-\n")
    return cursors, unused


def main() -> None:
    count = int(os.environ.get("BENCH_ITEMS", "1000000"))
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    with tempfile.TemporaryDirectory(prefix="inventory-million-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'million.db'}"
        timings = load(url, count, work)
        token = servers.create_key(url, TENANT)
        server = servers.start_service("SQLite", url, work / "server.log")
        try:
            rss_start = server.rss_bytes()
            cursors, unused = pools(count, work)
            wrk.run("list", server, token, unused, "warmup", 1, 2)
            runs = {
                (what, connections): wrk.run(
                    script, server, token, pool, "million", connections, duration
                )
                for what, script, pool in (
                    ("first page", "list", unused),
                    ("page at a random cursor", "list_page", cursors),
                )
                for connections in (1, 16)
            }
            rss_end, rss_peak = server.rss_bytes(), server.peak_rss_bytes()
        finally:
            server.stop()
        size = sum(f.stat().st_size for f in work.glob("million.db*"))
    memory = (rss_start, rss_end, rss_peak)
    document = render(count, timings, size, memory, runs, duration)
    print(document)
    (servers.BENCH / "million.md").write_text(document)


def render(
    count: int,
    timings: dict[str, float],
    size: int,
    memory: tuple[int, int, int],
    runs: dict[tuple[str, int], wrk.Result],
    duration: int,
) -> str:
    """The Markdown report: machine, how the data was loaded, latencies, targets."""
    mib = 2**20
    rss_start, rss_end, rss_peak = memory
    first = runs[("first page", 1)]
    rows = [
        "| GET /items?limit=100 | conns | req/s | p50 ms | p99 ms | failed |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {what} | {connections} | {r.rps:,.0f} | {r.p50_us / 1000:.2f}"
            f" | {r.p99_us / 1000:.2f} | {r.failed} |"
            for (what, connections), r in runs.items()
        ),
    ]
    rss_met = "met" if rss_peak <= RSS_TARGET_MB * 1e6 else "MISSED"
    p50_met = "met" if first.p50_us / 1000 <= P50_TARGET_MS else "MISSED"
    priority = f"; servers and wrk at nice {servers.NICE}" if servers.NICE else ""
    return (
        "\n\n".join(
            [
                f"# {count:,} items: memory and listing",
                report.machine({"duration": f"{duration} s per run{priority}"}),
                f"Loaded with `inventory import` of a generated export: generated in"
                f" {timings['generate']:.1f} s, imported in {timings['import']:.1f} s;"
                f" database file (with WAL) {size / mib:,.0f} MiB. Server: `inventory serve` on"
                f" core {servers.SERVER_CORE}, wrk on core {servers.LOAD_CORE}.",
                "\n".join(rows),
                "## Targets",
                f"- server RSS: {rss_start / mib:.0f} MiB after start, {rss_end / mib:.0f} MiB"
                f" after the load, peak {rss_peak / mib:.0f} MiB = {rss_peak / 1e6:.0f} MB"
                f" (target <= {RSS_TARGET_MB} MB): {rss_met}\n"
                f"- GET /items?limit=100 p50 at 1 connection: {first.p50_us / 1000:.2f} ms"
                f" (target <= {P50_TARGET_MS:g} ms): {p50_met}",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
