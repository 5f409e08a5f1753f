"""Memory and read speed with 1,000,000 items and events: ``.venv/bin/python -m bench.million``.

How the data gets there, fast and through the front door: a generated JSON Lines export of
version 1 (the format of ``inventory export`` before the ledger) is loaded with ``inventory
import`` into a fresh SQLite file, which validates every record and writes them in one
transaction. Because a version 1 export predates the ledger, the import opens it the way the
ledger's rule says for items older than it: each item gets its ``created`` event at the
version and qty it stands at (delta = qty), numbered 1..N in creation order, and the
tenant's feeds row says N. So the file holds N items and N events; ``inventory check`` is run
once on it to prove that every invariant holds. Then a writer key is made with ``inventory
keys create`` and ``inventory serve`` starts on the file, pinned to core 1 like in
``bench/run``, with wrk on core 0.

Measured: the server's RSS after start, after each kind of request and at its peak (target
<= 150 MB), and the latency (target p50 <= 5 ms at 1 connection, the service time alone; 16
connections for contrast) of a page of 100 items (the first page, and pages starting at
random cursors), a page of 100 events of the feed (``GET /events?after=<random>``), and an
item's history (``GET /items/<random id>/events``, one event: its opening one). Prints
Markdown and saves it to bench/million.md. BENCH_ITEMS (1000000) and BENCH_DURATION (10 s
per run) change the size.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bench import report, servers, wrk
from model.invariants import name_key
from service.http.cursors import encode_cursor
from service.ids import new_id
from service.store import shared
from service.transfer import trailer

TENANT = "bench"
RSS_TARGET_MB = 150
P50_TARGET_MS = 5.0
PAGE = 100
"""The ``limit`` of every measured request."""
CONNECTIONS = (1, 16)
SAMPLES = 1000
"""Random cursors, feed positions and item ids in each wrk pool."""


@dataclass(frozen=True)
class Fill:
    """How the database was filled, how long each step took (s), and what it holds."""

    items: int
    events: int
    last_seq: int
    seconds: dict[str, float]


@dataclass(frozen=True)
class Request:
    """One kind of request measured: its label, the wrk script that sends it, its pool, and
    its path with ``{}`` where the script puts a pool entry."""

    label: str
    script: str
    pool: Path
    path: str

    def first_path(self) -> str:
        """The path with the pool's first entry."""
        return self.path.format(self.pool.read_text().splitlines()[0])


@dataclass(frozen=True)
class Run:
    """One wrk run, the server's RSS right after it, and the size of the page it asked for."""

    result: wrk.Result
    rss_after: int
    page: int


def item_names(count: int) -> Iterator[str]:
    return (f"item {number:07d}" for number in range(count))


def write_export(out: TextIO, count: int) -> None:
    """A version 1 export with ``count`` items of one tenant (and no keys, no events), ending
    with the record that counts them."""
    out.write(json.dumps({"type": "inventory-export", "version": 1}) + "\n")
    stamp = "2026-01-01T00:00:00.000000Z"
    rng = random.Random(1)
    for name in item_names(count):
        record = {
            "type": "item", "tenant": TENANT, "id": new_id(), "name": name,
            "qty": rng.randrange(10_000), "version": 1, "created_at": stamp, "updated_at": stamp,
        }  # fmt: skip
        out.write(json.dumps(record) + "\n")
    out.write(json.dumps(trailer(keys=0, items=count, events=0)) + "\n")  # no answers in v1


def load(database_url: str, count: int, work: Path) -> dict[str, float]:
    """Generate the export, import it, check the result; how long each step took (s)."""
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
    imported = time.monotonic()
    export.unlink()  # the import is done with it; the file is as big as the database
    subprocess.run(
        [str(servers.BIN / "inventory"), "check", "--database", database_url], check=True
    )
    checked = time.monotonic()
    return {
        "generate": generated - started,
        "import": imported - generated,
        "check": checked - imported,
    }


def read_ledger(database: Path, samples: int = SAMPLES) -> tuple[int, int, list[str]]:
    """The events and the feed's last_seq in the file, and the ids of ``samples`` random
    items (with repeats), read before the server starts."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (events,) = db.execute("SELECT count(*) FROM events WHERE tenant = ?", [TENANT]).fetchone()
        (last_seq,) = db.execute("SELECT last_seq FROM feeds WHERE tenant = ?", [TENANT]).fetchone()
        rng = random.Random(3)
        ids = [
            db.execute(
                "SELECT item_id FROM events WHERE tenant = ? AND seq = ?",
                [TENANT, rng.randint(1, events)],
            ).fetchone()[0]
            for _ in range(samples)
        ]
    return events, last_seq, ids


def query_plans(database: Path) -> dict[str, str]:
    """How SQLite answers the service's feed and history queries (EXPLAIN QUERY PLAN)."""
    queries = {
        "feed": (shared.feed_query(lambda _: "?"), [TENANT, 0, PAGE]),
        "item history": (shared.history_query(lambda _: "?"), [TENANT, "-", 0, PAGE + 1]),
    }
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {
            what: "; ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", arguments))
            for what, (sql, arguments) in queries.items()
        }


def requests(count: int, events: int, ids: list[str], work: Path) -> list[Request]:
    """The requests measured, each with the pool its wrk script picks from at random."""
    rng = random.Random(2)
    pools = {
        "unused": ["-"],  # list.lua asks for the first page and ignores its pool
        # cursors with a full page after each: after item 0 .. item count - 101
        "cursors": [
            encode_cursor(name_key(f"item {rng.randrange(max(count - PAGE, 1)):07d}"))
            for _ in range(SAMPLES)
        ],
        # positions with a full page after each: after = 0 .. events - 100
        "positions": [str(rng.randint(0, max(events - PAGE, 0))) for _ in range(SAMPLES)],
        # get.lua sends GET /items/{entry}: with these entries, the item's history
        "histories": [f"{item_id}/events?limit={PAGE}" for item_id in ids],
    }
    for name, entries in pools.items():
        (work / f"{name}.txt").write_text("\n".join(entries) + "\n")
    return [
        Request(
            f"`GET /items?limit={PAGE}`, first page", "list", work / "unused.txt",
            f"/items?limit={PAGE}",
        ),
        Request(
            f"`GET /items?limit={PAGE}&cursor=<random>`", "list_page", work / "cursors.txt",
            f"/items?limit={PAGE}&cursor={{}}",
        ),
        Request(
            f"`GET /events?after=<random>&limit={PAGE}`", "feed", work / "positions.txt",
            f"/events?after={{}}&limit={PAGE}",
        ),
        Request(
            f"`GET /items/<random id>/events?limit={PAGE}`", "get", work / "histories.txt",
            "/items/{}",
        ),
    ]  # fmt: skip


def page_size(server: servers.Server, token: str, path: str) -> int:
    """How many items or events the answer to ``GET path`` holds: what a page really carries."""
    sent = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(sent, timeout=10) as answer:
        page = json.load(answer)
    return len(page.get("items", page.get("events", [])))


def measure(
    server: servers.Server, token: str, measured: list[Request], duration: int
) -> dict[tuple[str, int], Run]:
    """Each request at each connection count, one after the other, after a short warm-up."""
    wrk.run("list", server, token, measured[0].pool, "warmup", 1, 2)
    runs = {}
    for request in measured:
        page = page_size(server, token, request.first_path())
        for connections in CONNECTIONS:
            result = wrk.run(
                request.script, server, token, request.pool, "million", connections, duration
            )
            runs[(request.label, connections)] = Run(result, server.rss_bytes(), page)
    return runs


def main() -> None:
    count = int(os.environ.get("BENCH_ITEMS", "1000000"))
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    with tempfile.TemporaryDirectory(prefix="inventory-million-") as tmp:
        work = Path(tmp)
        database = work / "million.db"
        url = f"sqlite:///{database}"
        seconds = load(url, count, work)
        events, last_seq, ids = read_ledger(database)
        plans = query_plans(database)
        fill = Fill(count, events, last_seq, seconds)
        token = servers.create_key(url, TENANT)
        server = servers.start_service("SQLite", url, work / "server.log")
        try:
            rss_start = server.rss_bytes()
            runs = measure(server, token, requests(count, events, ids, work), duration)
            rss_end, rss_peak = server.rss_bytes(), server.peak_rss_bytes()
        finally:
            server.stop()
        size = sum(f.stat().st_size for f in work.glob("million.db*"))
    document = render(fill, size, (rss_start, rss_end, rss_peak), runs, plans, duration)
    print(document)
    (servers.BENCH / "million.md").write_text(document)


def render(
    fill: Fill,
    size: int,
    memory: tuple[int, int, int],
    runs: dict[tuple[str, int], Run],
    plans: dict[str, str],
    duration: int,
) -> str:
    """The Markdown report: machine, how the data was loaded, latencies, targets."""
    priority = f"; servers and wrk at nice {servers.NICE}" if servers.NICE else ""
    parts = [
        f"# {fill.items:,} items and {fill.events:,} events: memory and reads",
        report.machine({"command": _command(), "duration": f"{duration} s per run{priority}"}),
        _loading(fill, size),
        _table(runs),
        "How SQLite answers the event reads (`EXPLAIN QUERY PLAN` of the service's queries):\n\n"
        + "\n".join(f"- {what}: `{plan}`" for what, plan in plans.items()),
        "## Targets",
        _targets(memory, runs),
    ]
    return "\n\n".join(parts) + "\n"


def _command() -> str:
    """This run's command line as ``bench/run million`` runs it, with the BENCH_ settings."""
    settings = [
        f"{name}={value}" for name, value in os.environ.items() if name.startswith("BENCH_")
    ]
    return f"`{' '.join([*sorted(settings), 'python -m bench.million'])}` (`bench/run million`)"


def _loading(fill: Fill, size: int) -> str:
    s = fill.seconds
    return (
        f"Loaded with `inventory import` of a generated version 1 export (no ledger): generated"
        f" in {s['generate']:.1f} s, imported in {s['import']:.1f} s; the import opened the"
        f" ledger with each item's `created` event: {fill.events:,} events, seq 1..{fill.events:,},"
        f" feeds last_seq {fill.last_seq:,}. `inventory check` on the filled file: every invariant"
        f" holds, in {s['check']:.1f} s. Database file (with WAL) {size / 2**20:,.0f} MiB."
        f" Server: `inventory serve` on core {servers.SERVER_CORE}, wrk on core"
        f" {servers.LOAD_CORE}. Each item's history is one event (its opening one), so the"
        f" history request returns a page of 1; the feed's pages hold {PAGE}."
    )


def _table(runs: dict[tuple[str, int], Run]) -> str:
    rows = [
        "| request | page | conns | req/s | p50 ms | p99 ms | failed | server RSS after, MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {label} | {run.page} | {connections} | {run.result.rps:,.0f}"
            f" | {run.result.p50_us / 1000:.2f}"
            f" | {run.result.p99_us / 1000:.2f} | {run.result.failed}"
            f" | {run.rss_after / 2**20:.0f} |"
            for (label, connections), run in runs.items()
        ),
    ]
    return "\n".join(rows)


def _verdict(measured: float, target: float, unit: str, failed: int = 0) -> str:
    if failed:
        return f"not measured: {failed} requests failed"
    if measured <= target:
        return "met"
    return f"MISSED by {measured - target:.2f} {unit} ({measured / target:.1f}x the target)"


def _targets(memory: tuple[int, int, int], runs: dict[tuple[str, int], Run]) -> str:
    mib = 2**20
    rss_start, rss_end, rss_peak = memory
    lines = [
        f"- server RSS: {rss_start / mib:.0f} MiB after start, {rss_end / mib:.0f} MiB after the"
        f" requests, peak {rss_peak / mib:.0f} MiB = {rss_peak / 1e6:.0f} MB (target <="
        f" {RSS_TARGET_MB} MB): {_verdict(rss_peak / 1e6, RSS_TARGET_MB, 'MB')}"
    ]
    for (label, connections), run in runs.items():
        if connections == 1:
            p50 = run.result.p50_us / 1000
            verdict = _verdict(p50, P50_TARGET_MS, "ms", run.result.failed)
            lines.append(
                f"- {label} p50 at 1 connection: {p50:.2f} ms (target <= {P50_TARGET_MS:g} ms):"
                f" {verdict}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
