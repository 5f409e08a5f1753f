"""What an operator sees of a live server: request ids, log lines, metrics.

In process: the real application on a real socket (``LiveServer``), its log lines captured
as JSON through the service's own handler (``service.logs.handler``), its metrics served by
the real metrics app on a port of its own. The command line's flags are in
``tests/system/test_observability.py``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service import logs, metrics
from service.http.metrics_site import metrics_app
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.problems import assert_problem
from tests.support.server import LiveServer

GENERATED = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Log:
    """The JSON lines the service logged while a test ran."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]

    def of(self, request_id: str) -> list[dict[str, Any]]:
        """The lines of one request, once its access line is there (it is written after the
        response has been sent, so it may come a moment after the client has its answer)."""
        deadline = time.monotonic() + 10
        while True:
            found = [line for line in self.lines() if line["request_id"] == request_id]
            if any(line["logger"] == "inventory.access" for line in found):
                return found
            assert time.monotonic() < deadline, f"no access line for {request_id}"
            time.sleep(0.01)


@pytest.fixture
def captured_log() -> Iterator[Log]:
    """Every log line of the service from DEBUG up, as it writes them in JSON."""
    stream = io.StringIO()
    handler, root = logs.handler("json", stream), logging.getLogger()
    handler.addFilter(lambda record: not record.name.startswith("urllib3"))  # the test's client
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield Log(stream)
    root.removeHandler(handler)
    root.setLevel(level)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, parsed by prometheus-client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape_until(
    scrape: Callable[[], requests.Response], name: str, at_least: float, **labels: str
) -> requests.Response:
    """A scrape in which ``name`` has reached ``at_least``: a request is counted just after
    its response has been sent, so a client may scrape a moment before that."""
    deadline = time.monotonic() + 10
    while True:
        answer = scrape()
        if value(answer.text, name, **labels) >= at_least or time.monotonic() > deadline:
            return answer
        time.sleep(0.01)


# --- request ids -----------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["a", "req-42", "Ab9._-", "x" * 128])
def test_a_well_formed_request_id_is_echoed_on_the_response_and_in_its_problem(
    writer: ContractClient, sent: str
) -> None:
    created = writer.post(
        "/items", json={"name": "apple", "qty": 1}, headers={"X-Request-ID": sent}
    )
    refused = writer.post(
        "/items", json={"name": "APPLE", "qty": 1}, headers={"X-Request-ID": sent}
    )

    assert created.headers["X-Request-ID"] == sent
    assert refused.headers["X-Request-ID"] == sent
    assert assert_problem(refused, 409, "urn:inventory:problem:name-taken")["request_id"] == sent


@pytest.mark.parametrize(
    "sent", ["", "x" * 129, "two words", "semi;colon", "caf\u00e9", "a/b", "{inject}"]
)
def test_a_malformed_request_id_is_replaced_by_a_generated_one(
    writer: ContractClient, sent: str
) -> None:
    first = writer.get("/items/not-a-uuid", headers={"X-Request-ID": sent})
    second = writer.get("/items/not-a-uuid", headers={"X-Request-ID": sent})

    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(GENERATED.fullmatch(i) and i != sent for i in ids), ids
    assert ids[0] != ids[1]
    assert [first.json()["request_id"], second.json()["request_id"]] == ids


def test_every_kind_of_answer_carries_a_request_id(
    writer: ContractClient, anonymous: ContractClient
) -> None:
    answers = [
        writer.post("/items", json={"name": "pear", "qty": 1}),  # 201
        writer.get("/items"),  # 200
        writer.delete("/items/00000000-0000-7000-8000-000000000000"),  # 204
        writer.get("/items/nope"),  # 400
        anonymous.get("/items"),  # 401
        writer.post("/keys", json={"role": "reader"}),  # 403
        writer.get("/nowhere"),  # 404 from the router
        writer.put("/items"),  # 405 from the router
        writer.post("/items", data=b"x" * 70_000, headers={"Content-Type": "application/json"}),
    ]

    assert [a.status_code for a in answers] == [201, 200, 204, 400, 401, 403, 404, 405, 413]
    for answer in answers:
        assert GENERATED.fullmatch(answer.headers["X-Request-ID"]), answer.status_code
        if answer.status_code >= 400:
            assert answer.json()["request_id"] == answer.headers["X-Request-ID"]


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server on a SQLite file of this test's own (to break behind its back)."""
    live = LiveServer(tmp_path / "inventory.db").start()
    yield live
    live.stop()


def test_a_500_from_a_broken_database_carries_its_request_id_and_counts_as_a_fault(
    sqlite_server: LiveServer,
) -> None:
    token = sqlite_server.create_key("acme", "reader")
    with sqlite3.connect(sqlite_server.database) as db:  # type: ignore[arg-type]
        db.execute("DROP TABLE items")  # a real database error, no mock
    with serving_metrics(sqlite_server) as scrape:
        before = scrape().text
        answer = requests.get(
            f"{sqlite_server.url}/items",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "broken-1"},
            timeout=10,
        )
        faults = value(before, "inventory_database_faults_total", kind="OperationalError")
        after = scrape_until(
            scrape, "inventory_database_faults_total", faults + 1, kind="OperationalError"
        ).text

    assert answer.status_code == 500
    assert answer.headers["X-Request-ID"] == "broken-1"
    assert answer.json()["request_id"] == "broken-1"
    kind = {"kind": "OperationalError"}
    assert value(after, "inventory_database_faults_total", **kind) == (
        value(before, "inventory_database_faults_total", **kind) + 1
    )


# --- logs ----------------------------------------------------------------------------------


def test_a_request_can_be_followed_from_its_response_header_to_its_log_line_and_event(
    writer: ContractClient, captured_log: Log, server: LiveServer
) -> None:
    item = writer.post("/items", json={"name": "apple", "qty": 5}).json()
    answer = writer.post(f"/items/{item['id']}/adjustments", json={"delta": -2, "reason": "sold"})
    request_id = answer.headers["X-Request-ID"]

    [access] = captured_log.of(request_id)  # the why is in the ledger, not in the log
    [event] = [e for e in db.events(server.database) if e["request_id"] == request_id]
    assert (event["item_id"], event["delta"], event["reason"]) == (item["id"], -2, "sold")
    assert access["logger"] == "inventory.access"
    assert access["level"] == "INFO"
    assert access["operationId"] == "adjustItem"
    assert (access["method"], access["status"], access["tenant"]) == ("POST", 200, "acme")
    assert access["key_id"] == event["key_id"]
    assert str(writer.headers["Authorization"]).split("_")[1] == access["key_id"]
    assert access["duration_ms"] > 0
    assert access["response_bytes"] >= len(answer.content)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", access["time"])


def test_an_unrouted_request_has_one_access_line_without_operation_or_caller(
    anonymous: ContractClient, captured_log: Log
) -> None:
    answer = anonymous.get("/nowhere", headers={"X-Request-ID": "lost-1"})

    [access] = captured_log.of("lost-1")
    assert answer.status_code == 404
    assert (access["operationId"], access["status"], access["tenant"]) == (None, 404, None)


def test_no_secret_authorization_header_or_body_reaches_the_log(
    server: LiveServer, writer: ContractClient, captured_log: Log
) -> None:
    valid = str(writer.headers["Authorization"]).removeprefix("Bearer ")
    unknown = "inv_0123456789abcdef_" + "U" * 43
    secrets = [valid, valid.split("_", 2)[2], unknown, "MALFORMEDSECRET", "BODYSECRET", "RAWSECRET"]
    url = server.url
    requests.get(f"{url}/items", headers={"Authorization": f"Bearer {unknown}"}, timeout=10)
    requests.get(f"{url}/items", headers={"Authorization": "Bearer MALFORMEDSECRET"}, timeout=10)
    requests.get(f"{url}/items", headers={"Authorization": "Basic MALFORMEDSECRET"}, timeout=10)
    writer.post("/items", json={"name": "BODYSECRET", "qty": -1, "extra": "BODYSECRET"})
    writer.post("/items", data=b'{"name": "BODYSECRET", "qty": NaN}',
                headers={"Content-Type": "application/json"})  # fmt: skip
    writer.post("/keys", json={"role": "BODYSECRET"})
    writer.get("/items", params={"name_prefix": "BODYSECRET"})
    raw_request(server, b"GET /items HTTP/1.1\r\nHost: x\r\nAuthorization : RAWSECRET\r\n\r\n")
    raw_request(server, b"GET /items HTTP/1.1\r\nHost: x\r\nX-Bad: RAW\x01SECRET\r\n\r\n")
    writer.get("/items", headers={"X-Request-ID": "last"})
    captured_log.of("last")

    text = captured_log.text()
    assert sum(line["logger"] == "inventory.access" for line in captured_log.lines()) >= 8
    assert [secret for secret in secrets if secret in text] == [], text
    assert "Authorization" not in text


def raw_request(server: LiveServer, data: bytes) -> bytes:
    """Send ``data`` as it is; whatever comes back."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(data)
        return connection.recv(65536)


# --- metrics -------------------------------------------------------------------------------


@contextmanager
def serving_metrics(server: LiveServer) -> Iterator[Callable[[], requests.Response]]:
    """Metrics recorded, and served by the metrics app on a port of its own: a scraper."""
    runner = web.AppRunner(metrics_app(REGISTRY), access_log=None)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port: int = runner.addresses[0][1]
        return port

    port = server.run(start())
    metrics.enable()
    try:
        yield lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        metrics.enable(False)
        server.run(runner.cleanup())


def test_metrics_parse_and_their_counters_move_with_traffic(
    server: LiveServer, writer: ContractClient
) -> None:
    with serving_metrics(server) as scrape:
        before = scrape().text
        for number in range(3):
            writer.post("/items", json={"name": f"item {number}", "qty": 1})
        writer.get("/items/nope")
        after = scrape_until(
            scrape, "inventory_requests_total", value(before, "inventory_requests_total",
            operation="getItem", status="400") + 1, operation="getItem", status="400",
        )  # fmt: skip

    created, refused = {"operation": "createItem", "status": "201"}, {
        "operation": "getItem", "status": "400"
    }  # fmt: skip
    assert after.status_code == 200
    assert after.headers["Content-Type"].startswith("text/plain")
    count = "inventory_requests_total"
    assert value(after.text, count, **created) == value(before, count, **created) + 3
    assert value(after.text, count, **refused) == value(before, count, **refused) + 1
    timed = "inventory_request_duration_seconds_count"
    assert value(after.text, timed, operation="createItem") >= 3
    assert value(after.text, "process_resident_memory_bytes") > 0


def test_a_waiting_long_poll_is_counted_while_it_waits(
    server: LiveServer, writer: ContractClient, reader: ContractClient
) -> None:
    name = "inventory_long_polls_waiting"
    with serving_metrics(server) as scrape, ThreadPoolExecutor(1) as pool:
        before = value(scrape().text, name)
        params: dict[str, str | int] = {"after": "0", "wait": 10}
        poll = pool.submit(reader.get, "/events", params=params)
        during = scrape_until(scrape, name, before + 1).text
        writer.post("/items", json={"name": "apple", "qty": 1})
        assert poll.result(timeout=10).json()["events"][0]["type"] == "created"
        after = scrape_until_below(scrape, name, before + 1).text

    assert value(during, name) == before + 1
    assert value(after, name) == before


def scrape_until_below(
    scrape: Callable[[], requests.Response], name: str, below: float
) -> requests.Response:
    deadline = time.monotonic() + 10
    while True:
        answer = scrape()
        if value(answer.text, name) < below or time.monotonic() > deadline:
            return answer
        time.sleep(0.01)


def test_group_commits_are_measured_on_sqlite(sqlite_server: LiveServer) -> None:
    token = sqlite_server.create_key("acme", "writer")
    with serving_metrics(sqlite_server) as scrape:
        before = scrape().text
        with ContractClient(sqlite_server.url, token) as client:
            client.post("/items", json={"name": "apple", "qty": 1})
        after = scrape().text

    batches = "inventory_group_commit_batch_size_count"
    assert value(after, batches) == value(before, batches) + 1
    assert value(after, "inventory_group_commit_duration_seconds_sum") > 0


def test_the_api_port_never_serves_metrics(anonymous: ContractClient) -> None:
    assert anonymous.get("/metrics").status_code == 404
