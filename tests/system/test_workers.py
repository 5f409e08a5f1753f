"""``inventory serve --workers N``: several processes on one port, sharing one PostgreSQL.

Every test runs the real console script in a subprocess (in a session of its own, so
``tests.support.processes.ServedProcess`` can always take the whole process group down)
over a PostgreSQL database made for that test alone. Which process answers a connection
is read from the kernel, not guessed: ``/proc/net/tcp`` gives the inode of the server
side of every connection to the port, and ``/proc/<pid>/fd`` says which worker holds
that inode.

The tests that need PostgreSQL request conftest's ``fresh_postgres`` (made through
``postgres_url``), so they are skipped when it is unreachable (and fail in CI, where it
must be there).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest

from model.invariants import QTY_MAX, name_key
from service.auth import new_key
from service.store import open_store
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import PostgresDatabase, key_id
from tests.support.problems import NAME_TAKEN, OUT_OF_RANGE
from tests.support.processes import ServedProcess, free_port, run_inventory

T = TypeVar("T")

WORKERS = 2
CLIENTS = 8
ADJUSTMENTS = 1000
LISTEN, ESTABLISHED = "0A", "01"  # socket states in /proc/net/tcp
STOP_SECONDS = 10.0


# --- what the kernel knows about processes and sockets ------------------------------------


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``Z`` for a zombie), or None once it is gone entirely."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has exited; it only awaits its reaper)."""
    return process_state(pid) not in (None, "Z")


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets that ``pid`` holds open."""
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp: ports, state and inode."""

    local_port: int
    remote_port: int
    state: str
    inode: int


def tcp_sockets() -> list[TcpSocket]:
    """Every IPv4 TCP socket of this network namespace."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        rows.append(
            TcpSocket(
                int(fields[1].rsplit(":", 1)[1], 16),
                int(fields[2].rsplit(":", 1)[1], 16),
                fields[3],
                int(fields[9]),
            )
        )
    return rows


def listeners(port: int, candidates: set[int]) -> set[int]:
    """The processes among ``candidates`` with a listening socket on ``port``."""
    listening = {s.inode for s in tcp_sockets() if s.local_port == port and s.state == LISTEN}
    return {pid for pid in candidates if socket_inodes(pid) & listening}


def workers_of_my_connections(port: int, workers: list[int]) -> Counter[int]:
    """For each open connection of this process to ``port``: the worker at its other end.

    A connection whose server side no worker holds counts as worker 0.
    """
    sockets = tcp_sockets()
    mine = socket_inodes(os.getpid())
    client_ports = [
        s.local_port
        for s in sockets
        if s.remote_port == port and s.state == ESTABLISHED and s.inode in mine
    ]
    server_side = {
        s.remote_port: s.inode for s in sockets if s.local_port == port and s.state == ESTABLISHED
    }
    holder = {inode: pid for pid in workers for inode in socket_inodes(pid)}
    return Counter(holder.get(server_side.get(port_, -1), 0) for port_ in client_ports)


def eventually(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition`` becomes true within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_until(condition: Callable[[], T | None], seconds: float, what: str) -> T:
    """Poll ``condition`` until it is truthy (its value), failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


# --- the service under test --------------------------------------------------------------


class ServedWorkers(ServedProcess):
    """``inventory serve --workers N`` on a free port, as a context manager.

    On entry it waits until N processes listen on the port (not merely until one answers);
    on exit it makes sure every process it started is gone (SIGTERM, then SIGKILL to its
    own process group).
    """

    def __init__(self, database: str, directory: Path, workers: int = WORKERS) -> None:
        super().__init__(
            directory, "--workers", str(workers), "--database", database,
            ready_seconds=60, stop_seconds=STOP_SECONDS,
        )  # fmt: skip
        self.workers_wanted = workers
        self.workers: list[int] = []
        self.family: set[int] = set()

    def wait_until_ready(self) -> Self:
        self.workers = sorted(
            wait_until(self._listening, self.ready_seconds, "every worker listens")
        )
        self.family = {self.pid, *children(self.pid)}
        return self

    def _listening(self) -> set[int] | None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"inventory serve exited with {self.process.returncode}:\n{self.stderr()}"
            )
        found = listeners(self.port, children(self.pid))
        return found if len(found) == self.workers_wanted else None

    def remaining(self) -> set[int]:
        """The processes of this service that are still running."""
        return {pid for pid in self.family | set(self.workers) if is_running(pid)}


def add_key(database: str, tenant: str, role: str) -> str:
    """Migrate ``database`` and store a new key (setup, behind the service's back)."""

    async def add() -> str:
        store = await open_store(database)
        try:
            key, secret = new_key(tenant, role)
            await store.add_key(key)
            return secret
        finally:
            await store.close()

    return asyncio.run(add())


def clients_on_every_worker(
    serve: ServedWorkers, token: str, minimum: int = 2
) -> list[ContractClient]:
    """CLIENTS keep-alive clients, at least ``minimum`` of them connected to each worker.

    The kernel spreads connections over the workers by a hash of their addresses, so the
    clients are made again (a bounded number of times) until the spread is as wanted.
    """
    for _ in range(40):
        clients = [ContractClient(serve.url, token) for _ in range(CLIENTS)]
        for client in clients:
            assert client.get("/healthz", timeout=10).status_code == 200
        spread = workers_of_my_connections(serve.port, serve.workers)
        if sum(spread.values()) == CLIENTS and all(
            spread[worker] >= minimum for worker in serve.workers
        ):
            return clients
        for client in clients:
            client.close()
    raise AssertionError(f"the clients never reached every worker: {serve.workers}")


def one_client_per_worker(serve: ServedWorkers, token: str) -> dict[int, ContractClient]:
    """A keep-alive client connected to each worker, by worker PID.

    Clients are made one at a time; the one new connection each opens shows which worker
    accepted it. Clients landing on a worker that already has one are closed again.
    """
    chosen: dict[int, ContractClient] = {}
    for _ in range(64):
        before = workers_of_my_connections(serve.port, serve.workers)
        client = ContractClient(serve.url, token)
        assert client.get("/healthz", timeout=10).status_code == 200
        [worker] = list(workers_of_my_connections(serve.port, serve.workers) - before)
        if worker in chosen or worker == 0:
            client.close()
        else:
            chosen[worker] = client
        if len(chosen) == len(serve.workers):
            return chosen
    close_all(list(chosen.values()))
    raise AssertionError(f"64 connections never reached every worker of {serve.workers}")


def close_all(clients: list[ContractClient]) -> None:
    for client in clients:
        client.close()


def in_parallel(clients: list[ContractClient], work: Callable[[int, ContractClient], T]) -> list[T]:
    """``work(index, client)`` on one thread per client, all at once; their results."""
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(work, index, client) for index, client in enumerate(clients)]
        return [future.result(timeout=120) for future in futures]


# --- tests -------------------------------------------------------------------------------


def test_serve_with_two_workers_runs_two_processes_that_share_one_port_and_one_database(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        assert len(serve.workers) == WORKERS
        assert serve.pid not in serve.workers
        assert set(serve.workers) <= children(serve.pid)
        token = wait_until(
            lambda: re.search(r"export INVENTORY_TOKEN=(inv_\S+)", serve.stdout()),
            10,
            "the first start prints an admin key",
        ).group(1)
        by_worker = one_client_per_worker(serve, token)
        clients = list(by_worker.values())
        try:
            first, second = (by_worker[worker] for worker in serve.workers)

            created = first.post("/items", json={"name": "Bolt", "qty": 5}, timeout=30)
            assert created.status_code == 201, created.text
            item = created.json()
            seen = second.get(f"/items/{item['id']}", timeout=30)  # written by one, read by other
            assert seen.status_code == 200, seen.text
            assert seen.json() == item
            adjusted = second.post(
                f"/items/{item['id']}/adjustments", json={"delta": 3}, timeout=30
            )
            assert adjusted.status_code == 200
            assert first.get(f"/items/{item['id']}", timeout=30).json() == adjusted.json()
            listed = first.get("/items", timeout=30).json()
            assert listed == {"items": [adjusted.json()], "next_cursor": None}
            # Still one connection to each worker: the requests above really crossed over.
            spread = workers_of_my_connections(serve.port, serve.workers)
            assert spread == Counter(serve.workers)
            [row] = db.items(fresh_postgres)
            assert (row["id"], row["name"], row["qty"], row["version"]) == (
                item["id"],
                "Bolt",
                8,
                2,
            )

            serve.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            returncode = serve.process.wait(timeout=STOP_SECONDS)
            wait_until(lambda: not serve.remaining(), STOP_SECONDS, "every process is gone")
            stopped_in = time.monotonic() - started
        finally:
            close_all(clients)
    assert returncode == 0, serve.stderr()
    assert stopped_in < STOP_SECONDS
    assert not [s for s in tcp_sockets() if s.local_port == serve.port and s.state == LISTEN]
    assert "Traceback" not in serve.stderr()


def test_the_first_start_prints_a_curl_example_for_the_address_it_serves(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    serve = ServedWorkers(fresh_postgres.url, tmp_path)
    try:
        serve.start()  # the example is shown before the workers start: no need to wait for them
        output = wait_until(
            lambda: serve.stdout() if "curl" in serve.stdout() else None, 30, "the curl example"
        )
    finally:
        serve.stop()
    [curl] = [line for line in output.splitlines() if "curl" in line]
    assert f"http://127.0.0.1:{serve.port}/items" in curl, curl


def test_sigint_to_the_main_process_alone_stops_every_worker(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    """What a process manager does that signals only the main PID (not a terminal's Ctrl-C)."""
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        serve.process.send_signal(signal.SIGINT)
        stopped = eventually(lambda: not serve.remaining(), STOP_SECONDS)
        still_running = sorted(serve.remaining())
    assert stopped, f"{STOP_SECONDS} s after SIGINT to {serve.pid}, still running: {still_running}"
    assert "Traceback" not in serve.stderr()


def test_sigkill_of_the_main_process_stops_every_worker_and_frees_the_port(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    """No orphan keeps serving: a new server (without SO_REUSEPORT) can bind the port."""
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        os.kill(serve.pid, signal.SIGKILL)  # the main process alone, as the OOM killer would
        serve.process.wait(timeout=STOP_SECONDS)
        stopped = eventually(lambda: not serve.remaining(), STOP_SECONDS)
        still_running = sorted(serve.remaining())
        assert stopped, f"{STOP_SECONDS} s after SIGKILL to {serve.pid}: {still_running} run"
        with socket.create_server(("127.0.0.1", serve.port)):  # EADDRINUSE if any listens
            pass
    assert "Traceback" not in serve.stderr()


def exit_logs(stderr: str, pid: int) -> list[dict[str, Any]]:
    """The JSON log lines of ``stderr`` that report the exit of worker ``pid``."""
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("worker") == pid and "exitcode" in r]


def test_a_worker_killed_by_sigkill_is_logged_and_replaced_and_requests_keep_succeeding(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    token = add_key(fresh_postgres.url, "acme", "writer")
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        victim, survivor = serve.workers
        os.kill(victim, signal.SIGKILL)

        def newcomers() -> set[int] | None:
            found = listeners(serve.port, children(serve.pid))
            return found - {survivor} if found - {victim, survivor} and survivor in found else None

        [newcomer] = wait_until(newcomers, 30, "a new worker listens in place of the killed one")
        for number in range(20):  # a new connection each: the kernel spreads them over both
            with ContractClient(serve.url, token) as client:
                created = client.post("/items", json={"name": f"N{number}", "qty": 1}, timeout=30)
                assert created.status_code == 201, created.text
        assert len(db.items(fresh_postgres)) == 20
        [logged] = exit_logs(serve.stderr(), victim)
        assert logged["exitcode"] == -signal.SIGKILL, logged
        serve.process.send_signal(signal.SIGTERM)  # the replacement stops with the rest
        returncode = serve.process.wait(timeout=STOP_SECONDS)
        stopped = eventually(
            lambda: not serve.remaining() and not is_running(newcomer), STOP_SECONDS
        )
        assert stopped, sorted(serve.remaining() | {newcomer})
    assert returncode == 0, serve.stderr()
    assert "Traceback" not in serve.stderr()


@dataclass(frozen=True)
class Outcome:
    """One adjustment as sent and as answered."""

    delta: int
    status: int
    body: dict[str, Any]


def test_concurrent_adjustments_across_workers_lose_no_update_and_never_go_negative(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    token = add_key(fresh_postgres.url, "acme", "writer")
    rng = random.Random(20240601)
    # Mostly small steps, biased downwards so the quantity keeps hitting zero (and racing
    # adjustments get refused); every 50th step can never fit and must be refused.
    deltas = [
        -(10**6) if n % 50 == 49 else rng.choice((-1, -1, -1, 1, 1)) * rng.randint(1, 5)
        for n in range(ADJUSTMENTS)
    ]
    initial = 20
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        clients = clients_on_every_worker(serve, token)
        try:
            created = clients[0].post("/items", json={"name": "Nut", "qty": initial}, timeout=30)
            assert created.status_code == 201
            item_id = created.json()["id"]
            start = threading.Barrier(CLIENTS, timeout=30)

            def adjust(index: int, client: ContractClient) -> list[Outcome]:
                start.wait()
                outcomes = []
                for delta in deltas[index::CLIENTS]:
                    response = client.post(
                        f"/items/{item_id}/adjustments", json={"delta": delta}, timeout=30
                    )
                    outcomes.append(Outcome(delta, response.status_code, response.json()))
                return outcomes

            began = time.monotonic()
            outcomes = [o for mine in in_parallel(clients, adjust) for o in mine]
            elapsed = time.monotonic() - began
            final = clients[0].get(f"/items/{item_id}", timeout=30).json()
            spread = workers_of_my_connections(serve.port, serve.workers)
        finally:
            close_all(clients)

    statuses = Counter(o.status for o in outcomes)
    acknowledged = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 409]
    print(
        f"\n{ADJUSTMENTS} adjustments by {CLIENTS} clients over {WORKERS} workers in "
        f"{elapsed:.2f} s ({ADJUSTMENTS / elapsed:.0f}/s): {len(acknowledged)} acknowledged, "
        f"{len(refused)} refused; connections per worker at the end: {dict(spread)}"
    )
    assert len(outcomes) == ADJUSTMENTS
    assert set(statuses) <= {200, 409}, statuses  # in particular: no 5xx
    assert all(o.body["type"] == OUT_OF_RANGE for o in refused)
    assert all(o.delta < 0 for o in refused), "an increase by at most 5 can never overflow"
    assert sum(1 for o in refused if o.delta == -(10**6)) == ADJUSTMENTS // 50
    assert len(acknowledged) > ADJUSTMENTS // 4
    assert all(0 <= o.body["qty"] <= QTY_MAX for o in acknowledged)

    assert final["qty"] == initial + sum(o.delta for o in acknowledged)
    assert final["version"] == 1 + len(acknowledged)
    # Each acknowledged adjustment got a version of its own, and replaying them in version
    # order gives exactly the quantity each one answered: the history is serial.
    history = sorted(acknowledged, key=lambda o: o.body["version"])
    assert [o.body["version"] for o in history] == list(range(2, 2 + len(acknowledged)))
    qty, seen = initial, [initial]
    for outcome in history:
        qty += outcome.delta
        assert outcome.body["qty"] == qty
        seen.append(qty)
    low = min(seen)
    assert all(low + o.delta < 0 for o in refused), "a refusal no state ever justified"
    [row] = db.items(fresh_postgres)
    assert (row["qty"], row["version"], row["updated_at"]) == (
        final["qty"],
        final["version"],
        final["updated_at"],
    )
    assert all(spread[worker] >= 1 for worker in serve.workers), spread


def test_concurrent_creates_of_one_name_across_workers_make_exactly_one_item(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    token = add_key(fresh_postgres.url, "acme", "writer")
    rounds = 10
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        clients = clients_on_every_worker(serve, token)
        try:
            start = threading.Barrier(CLIENTS, timeout=30)

            def create(index: int, client: ContractClient) -> list[tuple[int, dict[str, Any]]]:
                answers = []
                for round_ in range(rounds):
                    name = f"Gasket {round_}"
                    if round_ % 2:  # every other round: the same name, spelled differently
                        name = name.upper() if index % 2 else name.lower()
                    start.wait()
                    response = client.post("/items", json={"name": name, "qty": index}, timeout=30)
                    answers.append((response.status_code, response.json()))
                return answers

            answers = in_parallel(clients, create)
        finally:
            close_all(clients)

    rows = {row["name_key"]: row for row in db.items(fresh_postgres)}
    assert len(rows) == rounds
    for round_ in range(rounds):
        this_round = [answers[index][round_] for index in range(CLIENTS)]
        statuses = Counter(status for status, _ in this_round)
        assert statuses == {201: 1, 409: CLIENTS - 1}, (round_, statuses)
        [winner] = [body for status, body in this_round if status == 201]
        assert all(body["type"] == NAME_TAKEN for status, body in this_round if status == 409)
        row = rows[name_key(f"Gasket {round_}")]
        assert (row["id"], row["name"], row["qty"], row["version"]) == (
            winner["id"],
            winner["name"],
            winner["qty"],
            1,
        )


@pytest.mark.parametrize(
    ("arguments", "environment"),
    [
        (["--workers", "2", "--database", "sqlite:///inventory.db"], {}),
        (["--workers", "2", "--database", "inventory.db"], {}),
        ([], {"INVENTORY_WORKERS": "2", "INVENTORY_DATABASE_URL": "sqlite:///inventory.db"}),
    ],
    ids=["sqlite-url", "bare-path", "environment"],
)
def test_serve_with_several_workers_on_sqlite_exits_nonzero_naming_postgresql(
    tmp_path: Path, arguments: list[str], environment: dict[str, str]
) -> None:
    port = free_port()
    outcome = run_inventory(
        "serve", "--port", str(port), *arguments, cwd=tmp_path, env=environment, timeout=30
    )
    assert outcome.returncode != 0
    assert "PostgreSQL" in outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert not (tmp_path / "inventory.db").exists(), "it wrote to the SQLite file"


def test_serve_with_zero_workers_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    outcome = run_inventory(
        "serve", "--workers", "0", "--port", str(free_port()),
        "--database", "sqlite:///inventory.db", cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert outcome.returncode != 0
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert "workers" in outcome.stderr
    assert not (tmp_path / "inventory.db").exists()


# --- API keys, as each worker keeps them --------------------------------------------------


def _requests_until_refused(client: ContractClient, seconds: float) -> float:
    """Seconds until ``client`` is answered 401 (GET /items again and again), at most
    ``seconds``; then three more requests must be refused too."""
    started = time.monotonic()
    while client.get("/items", timeout=10).status_code != 401:
        assert time.monotonic() - started < seconds, f"still accepted after {seconds} s"
    took = time.monotonic() - started
    assert [client.get("/items", timeout=10).status_code for _ in range(3)] == [401] * 3
    return took


def _revoke_behind_the_services_back(database: str, key: str) -> None:
    db.execute(
        PostgresDatabase(database),
        "UPDATE api_keys SET revoked_at = '2026-01-01T00:00:00.000000Z'"
        f" WHERE id = '{key_id(key)}'",
    )


def test_a_key_revoked_through_one_worker_is_refused_by_every_worker_within_100_ms(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    admin = add_key(fresh_postgres.url, "acme", "admin")
    writer = add_key(fresh_postgres.url, "acme", "writer")
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        writers = one_client_per_worker(serve, writer)
        [revoker, *_] = one_client_per_worker(serve, admin).values()
        for client in writers.values():  # each worker reads the key, and keeps it
            assert [client.get("/items", timeout=10).status_code for _ in range(3)] == [200] * 3
        assert revoker.delete(f"/keys/{key_id(writer)}", timeout=10).status_code == 204
        took = {worker: _requests_until_refused(c, 1.0) for worker, c in writers.items()}
        close_all([*writers.values(), revoker])
    assert max(took.values()) < 0.1, took


def test_a_worker_keeps_the_keys_it_read_while_it_hears_revocations_and_none_while_it_cannot(
    fresh_postgres: PostgresDatabase, tmp_path: Path
) -> None:
    """The key cache is real (a revocation written behind the service's back, without its
    notification, is not seen while a worker keeps the key), and it fails closed: once the
    listening connection is gone, every lookup reads the database again."""
    writer = add_key(fresh_postgres.url, "acme", "writer")
    name = fresh_postgres.url.rsplit("/", 1)[1]
    with ServedWorkers(fresh_postgres.url, tmp_path) as serve:
        clients = one_client_per_worker(serve, writer)
        for client in clients.values():
            assert client.get("/items", timeout=10).status_code == 200
        _revoke_behind_the_services_back(fresh_postgres.url, writer)
        for client in clients.values():  # kept: only the service's revocations are heard
            assert client.get("/items", timeout=10).status_code == 200
        db.execute(
            fresh_postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND query LIKE 'LISTEN%'",
        )
        wait_until(
            lambda: serve.stderr().count("feed listener connection lost") >= WORKERS or None,
            10, "every worker notices its listening connection is gone",
        )  # fmt: skip
        for client in clients.values():  # nothing kept now: the database says revoked
            assert client.get("/items", timeout=10).status_code == 401
        close_all(list(clients.values()))
