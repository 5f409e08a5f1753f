"""The ``inventory`` command: serve, migrate, and manage API keys.

Every flag has an ``INVENTORY_*`` environment variable (``--database`` is
``INVENTORY_DATABASE_URL``); a flag given on the command line wins. ``serve`` stops on
SIGINT/SIGTERM: it stops accepting, lets in-flight requests finish, then closes the database.
With PostgreSQL, ``serve --workers N`` runs N such processes on one port (SO_REUSEPORT).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import wait
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from model.invariants import ROLES, InvariantViolation
from service import logs, metrics
from service.app import create_app
from service.audit import audit_store
from service.auth import new_key
from service.http.metrics_site import start_metrics_server
from service.http.observe import ACCESS_LOGGER, AccessLog
from service.store import Store, is_postgres, open_store
from service.transfer import export_jsonl, parse_export

DEFAULT_DATABASE = "sqlite:///inventory.db"
log = logging.getLogger("inventory")


class Settings(BaseModel):
    """How ``inventory serve`` runs."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    database: str = DEFAULT_DATABASE
    workers: int = Field(1, ge=1)
    log_format: str = Field("json", pattern=f"^({'|'.join(logs.FORMATS)})$")
    log_level: str = Field("info", pattern=f"^({'|'.join(logs.LEVELS)})$")
    metrics_port: int | None = Field(None, ge=0, le=65535)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``inventory`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.run(args)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"INVENTORY_{name}", default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventory", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database",
        default=_env("DATABASE_URL", DEFAULT_DATABASE),
        help="sqlite:///relative.db, sqlite:////abs/path.db, a file path, or postgresql://... "
        "(env INVENTORY_DATABASE_URL; default %(default)s)",
    )
    _add_serve(commands, database)
    migrate = commands.add_parser("migrate", parents=[database], help="bring the schema up to date")
    migrate.set_defaults(run=_migrate)
    _add_keys(commands, database)
    export = commands.add_parser("export", parents=[database], help="write the state as JSON Lines")
    export.set_defaults(run=_export)
    load = commands.add_parser("import", parents=[database], help="load an export (empty db only)")
    load.set_defaults(run=_import)
    check = commands.add_parser(
        "check", parents=[database], help="verify every invariant of the stored data"
    )
    check.set_defaults(run=_check)
    return parser


def _add_serve(commands: Any, database: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[database], help="run the HTTP service")
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="env INVENTORY_HOST")
    serve.add_argument(
        "--port", type=int, default=int(_env("PORT", "8000")), help="env INVENTORY_PORT"
    )
    serve.add_argument(
        "--workers", type=int, default=int(_env("WORKERS", "1")), help="env INVENTORY_WORKERS"
    )
    _add_observability(serve)
    serve.set_defaults(run=_serve)


def _add_observability(serve: argparse.ArgumentParser) -> None:
    """--log-format, --log-level, --metrics-port (see README, "Logs and metrics")."""
    serve.add_argument(
        "--log-format",
        default=_env("LOG_FORMAT", logs.default_format(sys.stderr)),
        help="json or text (env INVENTORY_LOG_FORMAT; default json unless stderr is a terminal)",
    )
    serve.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "info"), help="env INVENTORY_LOG_LEVEL"
    )
    serve.add_argument(
        "--metrics-port",
        default=_env("METRICS_PORT", "") or None,
        help="serve GET /metrics on the serve host at this port (env INVENTORY_METRICS_PORT;"
        " default: no metrics)",
    )


def _add_keys(commands: Any, database: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", parents=[database], help="create a key; prints it alone")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.set_defaults(run=_keys_create)
    listing = keys.add_parser("list", parents=[database], help="list keys (never their secrets)")
    listing.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", parents=[database], help="revoke a key, by id or whole key")
    revoke.add_argument("key", metavar="KEY_OR_ID")
    revoke.set_defaults(run=_keys_revoke)


def _serve(args: argparse.Namespace) -> None:
    settings = _settings(args)
    logs.configure(settings.log_format, settings.log_level)
    asyncio.run(_bootstrap(settings))
    if settings.workers == 1:
        _run_worker(settings)
    else:
        _run_workers(settings)


def _settings(args: argparse.Namespace) -> Settings:
    """The settings ``args`` give, or exit with one line naming every bad one."""
    try:
        settings = Settings(
            host=args.host, port=args.port, database=args.database, workers=args.workers,
            log_format=args.log_format, log_level=args.log_level.lower(),
            metrics_port=args.metrics_port,
        )  # fmt: skip
    except ValidationError as error:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in error.errors())
        sys.exit(f"inventory: {problems}")
    if settings.workers > 1 and not is_postgres(settings.database):
        sys.exit("inventory: --workers > 1 needs PostgreSQL; one process owns a SQLite file")
    return settings


def _run_workers(settings: Settings) -> None:
    """``settings.workers`` service processes; stopped together on SIGINT or SIGTERM."""
    directory = _aggregate_metrics(settings) if settings.metrics_port is not None else None
    try:
        _supervise(settings)
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _aggregate_metrics(settings: Settings) -> str:
    """Serve the sum of every worker's metrics from here (prometheus-client's multiprocess
    mode): a fresh directory, named to the workers before they start, read at each scrape."""
    directory = tempfile.mkdtemp(prefix="inventory-metrics-")
    os.environ[metrics.MULTIPROCESS_DIR] = directory  # inherited by the workers
    _start_metrics(settings)
    return directory


def _supervise(settings: Settings) -> None:
    workers = [
        multiprocessing.get_context("spawn").Process(target=_run_worker, args=(settings,))
        for _ in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def stop_workers(*_: object) -> None:
        for worker in workers:
            worker.terminate()  # SIGTERM: each worker finishes its requests, then exits

    # SIGINT may reach this process alone (kill -INT) or the whole group (Ctrl-C); either
    # way every worker is asked to stop gracefully, and this process waits for them.
    signal.signal(signal.SIGTERM, stop_workers)
    signal.signal(signal.SIGINT, stop_workers)
    running = {worker.sentinel: worker for worker in workers}
    while running:
        for sentinel in wait(list(running)):
            worker = running.pop(sentinel)  # type: ignore[arg-type]  # sentinels are ints
            worker.join()
            metrics.mark_dead(worker.pid)
            log.info("worker %s exited with %s", worker.pid, worker.exitcode)


def _run_worker(settings: Settings) -> None:
    """One service process; several share the port through SO_REUSEPORT."""
    logs.configure(settings.log_format, settings.log_level)  # a spawned worker starts afresh
    if settings.metrics_port is not None:
        metrics.enable()
        if settings.workers == 1:
            _start_metrics(settings)
    url = f"http://{settings.host}:{settings.port}"
    web.run_app(
        create_app(settings.database),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLog,
        access_log=ACCESS_LOGGER,
        shutdown_timeout=30,
        reuse_port=settings.workers > 1,
        print=lambda _: log.info("serving %s", url, extra={"pid": os.getpid()}),
    )
    log.info("stopped", extra={"pid": os.getpid()})


def _start_metrics(settings: Settings) -> None:
    assert settings.metrics_port is not None
    try:
        start_metrics_server(settings.host, settings.metrics_port, metrics.serving_registry())
    except OSError as error:
        sys.exit(f"inventory: --metrics-port {settings.metrics_port}: {error.strerror or error}")
    log.info("metrics at http://%s:%d/metrics", settings.host, settings.metrics_port)


async def _bootstrap(settings: Settings) -> None:
    """Migrate; on the very first start, create an admin key and show it once."""
    store = await open_store(settings.database)
    try:
        if not await store.list_keys(None):
            key, secret = new_key("default", "admin")
            await store.add_key(key)
            print(
                f"Created the first API key (admin, tenant 'default'); it is shown only now:\n"
                f"  export INVENTORY_TOKEN={secret}\n"
                f'  curl -H "Authorization: Bearer $INVENTORY_TOKEN" '
                f"http://{settings.host}:{settings.port}/items",
                flush=True,
            )
    finally:
        await store.close()


def _migrate(args: argparse.Namespace) -> None:
    async def nothing_more(store: Store) -> None:
        """Opening the store has applied every pending migration."""

    asyncio.run(_with_store(args.database, nothing_more))
    print("inventory: the schema is up to date")


def _keys_create(args: argparse.Namespace) -> None:
    try:
        key, secret = new_key(args.tenant, args.role)
    except InvariantViolation as violation:
        sys.exit(f"inventory: --{violation.errors[0].field} {violation.errors[0].message}")

    async def create(store: Store) -> None:
        await store.add_key(key)
        print(secret)

    asyncio.run(_with_store(args.database, create))


def _keys_list(args: argparse.Namespace) -> None:
    async def listing(store: Store) -> None:
        print("id\ttenant\trole\tcreated\trevoked")
        for key in await store.list_keys(None):
            print(f"{key.id}\t{key.tenant}\t{key.role}\t{key.created_at}\t{key.revoked_at or '-'}")

    asyncio.run(_with_store(args.database, listing))


def _keys_revoke(args: argparse.Namespace) -> None:
    key_id = args.key.split("_")[1] if args.key.startswith("inv_") else args.key

    async def revoke(store: Store) -> None:
        if not await store.revoke_key(None, key_id):
            sys.exit(f"inventory: no live key {key_id}")
        print(f"revoked {key_id}")

    asyncio.run(_with_store(args.database, revoke))


def _export(args: argparse.Namespace) -> None:
    async def export(store: Store) -> None:
        count = await export_jsonl(store, sys.stdout)
        print(f"inventory: exported {count} records", file=sys.stderr)

    asyncio.run(_with_store(args.database, export))


def _import(args: argparse.Namespace) -> None:
    try:
        export = parse_export(sys.stdin)  # all of it checked before the database is opened

        async def load(store: Store) -> None:
            await store.import_state(export)

        asyncio.run(_with_store(args.database, load))
    except ValueError as refusal:  # ImportRefused, or a target that is not empty
        sys.exit(f"inventory: nothing imported: {refusal}")
    print(
        f"inventory: imported {len(export.keys)} keys, {len(export.items)} items"
        f" and {len(export.events)} events",
        file=sys.stderr,
    )


def _check(args: argparse.Namespace) -> None:
    async def check(store: Store) -> None:
        problems = await audit_store(store)
        for problem in problems:
            print(problem)
        if problems:
            sys.exit(f"inventory: {len(problems)} invariant violation(s) found")
        print("inventory: every invariant holds", file=sys.stderr)

    asyncio.run(_with_store(args.database, check))


async def _with_store(database: str, action: Callable[[Store], Awaitable[None]]) -> None:
    store = await open_store(database)
    try:
        await action(store)
    finally:
        await store.close()
