"""``inventory serve``'s log and metrics flags, in real processes.

Logs are read from the process's stderr; metrics are scraped from ``--metrics-port`` and
parsed with prometheus-client's own parser. With ``--workers 2`` on PostgreSQL, the parent
serves one view summed over both workers (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from service.auth import new_key
from service.store import open_store
from tests.support.db import PostgresDatabase
from tests.support.processes import ServedProcess, free_port


def add_key(database: str) -> str:
    """Migrate ``database`` and store a writer key of tenant acme; its secret."""

    async def add() -> str:
        store = await open_store(database)
        try:
            key, secret = new_key("acme", "writer")
            await store.add_key(key)
            return secret
        finally:
            await store.close()

    return asyncio.run(add())


def counter(text: str, name: str, **labels: str) -> float:
    """One sample's value from a scrape (0 when absent), read by prometheus-client's parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def scrape(port: int) -> str:
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def create_items(url: str, token: str, count: int) -> list[str]:
    """``count`` creates, each on a new connection (so any worker may take it); their
    request ids."""
    ids = []
    for _ in range(count):
        answer = requests.post(
            f"{url}/items",
            json={"name": f"item {uuid.uuid4()}", "qty": 1},
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.headers["X-Request-ID"])
    return ids


def test_json_log_lines_follow_a_request_from_its_response_header(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'inventory.db'}"
    token = add_key(database)
    with ServedProcess(tmp_path, "--database", database) as served:
        [request_id] = create_items(served.url, token, 1)
        assert served.terminate() == 0
        lines = [json.loads(line) for line in served.stderr().splitlines()]

    [access] = [line for line in lines if line.get("request_id") == request_id]
    assert access["operationId"] == "createItem"
    assert (access["status"], access["tenant"], access["key_id"]) == (201, "acme", token[4:20])
    assert {"time", "level", "method", "duration_ms", "response_bytes"} <= access.keys()
    messages = [line["message"] for line in lines]
    assert any(m.startswith("serving http://127.0.0.1:") for m in messages), messages
    assert "stopped" in messages
    assert token not in served.stderr() + served.stdout()


def test_text_logs_at_a_level_chosen_by_environment_variables(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'inventory.db'}"
    token = add_key(database)
    env = {"INVENTORY_LOG_FORMAT": "text", "INVENTORY_LOG_LEVEL": "info"}
    with ServedProcess(tmp_path, "--database", database, env=env) as served:
        [request_id] = create_items(served.url, token, 1)
        served.terminate()
    quiet = {"INVENTORY_LOG_FORMAT": "text", "INVENTORY_LOG_LEVEL": "warning"}
    with ServedProcess(tmp_path, "--database", database, env=quiet) as silent:
        create_items(silent.url, token, 1)
        silent.terminate()

    [line] = [line for line in served.stderr().splitlines() if f"[{request_id}]" in line]
    assert " INFO " in line
    assert "POST createItem 201" in line
    assert "tenant='acme'" in line
    assert silent.stderr() == ""


def test_the_metrics_port_serves_counters_that_move_and_never_the_api(tmp_path: Path) -> None:
    database, port = f"sqlite:///{tmp_path / 'inventory.db'}", free_port()
    token = add_key(database)
    with ServedProcess(tmp_path, "--database", database, "--metrics-port", str(port)) as served:
        before = scrape(port)
        create_items(served.url, token, 3)
        time.sleep(0.2)  # each request is counted just after its response was sent
        after = scrape(port)
        api_metrics = requests.get(f"{served.url}/metrics", timeout=10).status_code
        port_api = requests.get(f"http://127.0.0.1:{port}/items", timeout=10).status_code

    created = {"operation": "createItem", "status": "201"}
    assert counter(after, "inventory_requests_total", **created) == 3
    assert counter(before, "inventory_requests_total", **created) == 0
    assert counter(after, "inventory_group_commit_batch_size_count") >= 1
    assert counter(after, "process_cpu_seconds_total") > 0
    assert (api_metrics, port_api) == (404, 404)


def test_two_workers_on_postgresql_show_one_view_summed_over_both(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    token, port = add_key(fresh_postgres.url), free_port()
    flags = ("--database", fresh_postgres.url, "--workers", "2", "--metrics-port", str(port))
    with ServedProcess(tmp_path, *flags) as served:
        create_items(served.url, token, 20)
        time.sleep(0.2)
        text = scrape(port)
        served.terminate()

    created = {"operation": "createItem", "status": "201"}
    assert counter(text, "inventory_requests_total", **created) == 20
    assert counter(text, "inventory_request_duration_seconds_count", operation="createItem") == 20
    assert counter(text, "inventory_pool_wait_seconds_count") >= 20
    pids = {line["pid"] for line in map(json.loads, served.stderr().splitlines()) if "pid" in line}
    assert len(pids) >= 2, served.stderr()
