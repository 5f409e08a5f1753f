"""The processes ``bench`` measures: the service and the echo app, pinned to one core.

Each server runs under ``taskset -c 1`` (its threads and worker processes inherit the
pin); the load generator runs on core 0. A ``Server`` also reads its own CPU time and
memory from /proc, summed over the process and its children (the workers of
``inventory serve --workers N``), so a report can say how much of core 1 it really had.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

SERVER_CORE = "1"
LOAD_CORE = "0"
NICE = int(os.environ.get("BENCH_NICE", "0"))
"""Niceness of the servers and wrk: below 0 (root only) they win over a busy neighbour."""
BIN = Path(sys.executable).parent  # bench runs on the project's .venv
BENCH = Path(__file__).resolve().parent
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A running server process (tree) and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def pids(self) -> list[int]:
        """The process and all its descendants."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                children = (task / "children").read_text().split()
                todo.extend(int(child) for child in children)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole tree so far."""
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / _TICKS

    def rss_bytes(self) -> int:
        """Resident memory of the whole tree (VmRSS)."""
        return sum(_status_kib(pid, "VmRSS") for pid in self.pids()) * 1024

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of the tree (VmHWM, summed)."""
        return sum(_status_kib(pid, "VmHWM") for pid in self.pids()) * 1024

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def pinned(core: str, command: list[str]) -> list[str]:
    """``command`` pinned to ``core`` (and reniced by BENCH_NICE, if set)."""
    nice = ["nice", "-n", str(NICE)] if NICE else []
    return [*nice, "taskset", "-c", core, *command]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(name: str, command: list[str], log: Path) -> Server:
    """Run ``command --port P`` pinned to the server core; return once /healthz answers."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            pinned(SERVER_CORE, [*command, "--port", str(port)]),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    _wait_until_healthy(server)
    return server


def _wait_until_healthy(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log}:\n{server.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not become healthy in {timeout} s; see {server.log}")


def start_service(name: str, database_url: str, log: Path, workers: int = 1) -> Server:
    """``inventory serve`` on ``database_url`` with everything on: SQLite's synchronous=FULL
    (its default), the access log (INFO, JSON: the default), and metrics (a metrics port,
    without which nothing is recorded)."""
    command = [str(BIN / "inventory"), "serve", "--database", database_url]
    metrics = ["--metrics-port", str(free_port())]
    return start(name, [*command, "--workers", str(workers), *metrics], log)


def start_echo(log: Path) -> Server:
    """The bare aiohttp baseline, ``bench/echo_app.py``."""
    return start("echo", [sys.executable, str(BENCH / "echo_app.py")], log)


def create_key(database_url: str, tenant: str = "bench", role: str = "writer") -> str:
    """A new API key, made with the CLI as an operator would (before the server starts)."""
    done = subprocess.run(
        [str(BIN / "inventory"), "keys", "create", "--tenant", tenant, "--role", role,
         "--database", database_url],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


async def _create_items(url: str, token: str, names: list[str]) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:

        async def create(name: str) -> str:
            async with session.post("/items", json={"name": name, "qty": 1_000_000}) as answer:
                answer.raise_for_status()
                item_id: str = (await answer.json())["id"]
                return item_id

        return list(await asyncio.gather(*(create(name) for name in names)))


def seed(server: Server, token: str, count: int) -> list[str]:
    """Create ``count`` items through the API; their ids, in creation order."""
    names = [f"seed-{number:05d}" for number in range(count)]
    return asyncio.run(_create_items(server.url, token, names))


async def _admin(sql: str) -> None:
    db = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await db.execute(sql)
    finally:
        await db.close()


def create_postgres_database() -> str:
    """A fresh database on the PostgreSQL server; its URL."""
    name = f"inventory_bench_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(url: str) -> None:
    """Drop the database at ``url``, closing its connections."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))


async def _postgres_version() -> str:
    db = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        version: str = await db.fetchval("SHOW server_version")
        return version
    finally:
        await db.close()


def postgres_version() -> str:
    """The PostgreSQL server's version."""
    return asyncio.run(_postgres_version())
