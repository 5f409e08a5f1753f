"""Schemathesis against the live service: every operation, every check, then the stateful phase.

``test_operation`` runs each operation of openapi.yaml through schemathesis' examples,
coverage and fuzzing phases, with positive and negative data, and validates every response
with every check schemathesis has: conformance of status, media type, headers and body;
negative data rejected and positive data accepted; missing required header; unsupported
method; ignored auth; object-level authorization. ``test_stateful`` then chains operations
along the contract's links (createItem -> getItem/updateItem/adjustItem/deleteItem,
createKey -> revokeKey, and those schemathesis infers), which adds use_after_free and
ensure_resource_availability.

Both read schemathesis.toml, as ``schemathesis run`` does: what a check needs to know about
this contract is configured there (and in ``tests.api.schemathesis_hooks``), once.

The service runs for the whole module, once on a SQLite file and once on PostgreSQL (which,
for one, cannot store or compare a NUL character). Requests are sent as an admin of
tenant ``acme``; an admin of tenant ``globex`` is the peer that object_level_authorization
replays each of acme's successful reads as: it must never get acme's item (or keys) back.
HYPOTHESIS_PROFILE=deep makes the run ten times deeper.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from service.auth import new_key
from service.store import ApiKey
from tests.support import db, postgres
from tests.support.server import LiveServer

REPO = Path(__file__).resolve().parents[2]
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"

# The identities exist before the schema is loaded, so that they can be given to schemathesis
# as its configured credentials (a Web Fuzzing Commons auth document); checks such as
# ignored_auth then know them for the run's own, valid keys. They are stored when the
# server starts.
IDENTITIES: dict[str, tuple[ApiKey, str]] = {
    tenant: new_key(tenant, "admin") for tenant in ("acme", "globex")
}


def _identities_document() -> Path:
    directory = tempfile.mkdtemp(prefix="inventory-schemathesis-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = Path(directory) / "identities.json"
    entries = [
        {"name": tenant, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {secret}"}]}
        for tenant, (_, secret) in IDENTITIES.items()
    ]
    path.write_text(json.dumps({"auth": entries}), encoding="utf-8")
    return path


def _config() -> schemathesis.Config:
    """schemathesis.toml, plus who the run is: acme, with globex as acme's peer."""
    config = tomllib.loads((REPO / "schemathesis.toml").read_text(encoding="utf-8"))
    config["auth"] = {
        "wfc": {"path": str(_identities_document()), "user": "acme", "peers": ["acme", "globex"]}
    }
    return schemathesis.Config.from_dict(config)


SCHEMA: OpenApiSchema = schemathesis.openapi.from_path(REPO / "openapi.yaml", config=_config())

EXAMPLES = settings(
    max_examples=1000 if DEEP else 100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
SCENARIOS = settings(
    max_examples=1000 if DEEP else 100,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The service over a fresh database of each backend, holding the run's keys."""
    database: db.Database = tmp_path_factory.mktemp("schemathesis") / "inventory.db"
    if request.param == "postgres":
        database = db.PostgresDatabase(request.getfixturevalue("postgres_url"))
    server = LiveServer(database).start()
    for key, _ in IDENTITIES.values():
        server.run(server.store.add_key(key))
    yield server
    _assert_keys_still_valid(server)
    server.stop()
    if isinstance(database, db.PostgresDatabase):
        postgres.empty_database(database.url)  # the session's database, shared with other tests


def _assert_keys_still_valid(server: LiveServer) -> None:
    """A run that revoked its own keys would have tested little but 401s; make that loud."""
    for tenant, (_, secret) in IDENTITIES.items():
        response = requests.get(
            f"{server.url}/keys", headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert response.status_code == 200, f"the run lost the key of {tenant}"


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One connection pool for the whole run (a new connection per request doubles its time)."""
    with requests.Session() as session:
        yield session


@SCHEMA.parametrize()
@EXAMPLES
def test_operation(
    case: schemathesis.Case[Any], live: LiveServer, session: requests.Session
) -> None:
    case.call_and_validate(base_url=live.url, session=session)


def test_stateful(live: LiveServer, session: requests.Session) -> None:
    base_url, database = live.url, live.database
    own_keys = ", ".join(f"'{key.id}'" for key, _ in IDENTITIES.values())

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        """Each scenario starts from the same state: no items, only the run's own keys.

        Then the same choices meet the same answers (a name is not taken by an earlier
        scenario), which Hypothesis needs to replay and shrink a failing scenario.
        """

        def setup(self) -> None:
            db.empty_items(database)
            db.execute(database, f"DELETE FROM api_keys WHERE id NOT IN ({own_keys})")

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"base_url": base_url, "session": session}

    Workflow.run(settings=SCENARIOS)
