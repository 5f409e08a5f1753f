"""The inventory command: serve, migrate, move data, check it, and manage API keys.

Every flag has an INVENTORY_* environment variable (--database is INVENTORY_DATABASE_URL);
a flag given on the command line wins. serve stops on SIGINT/SIGTERM: it stops accepting,
lets in-flight requests finish, then closes the database. With PostgreSQL, serve --workers N
runs N such processes on one port (SO_REUSEPORT): a worker that dies is logged and replaced
(after a backoff), and every worker stops when the main process dies, even by SIGKILL. An
export file carries every API key's hash: store it as you store secrets. Installed with
pip install . (not editable), it works from any folder: the contract and the migrations ship
in the package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import asyncpg
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
from service.store.faults import BadWaitBudget
from service.store.idempotency import DEFAULT_TTL
from service.store.ownership import FileOwned, owning
from service.store.shared import MigrationStopped, NotAnInventoryDatabase
from service.store.sqlite import sqlite_path
from service.transfer import export_jsonl, parse_export

DEFAULT_DATABASE = "sqlite:///inventory.db"
MAX_TTL = 30 * 24 * 60 * 60  # 30 days: records are rows of every write; more is a mistake
DEFAULTS = {
    "host": "127.0.0.1",
    "port": "8000",
    "database": DEFAULT_DATABASE,
    "workers": "1",
    "log_format": "auto",  # json, or text when stderr is a terminal
    "log_level": "info",
    "metrics_port": "",  # none: no metrics
    "idempotency_ttl": str(DEFAULT_TTL),
}
ENVIRONMENT = {name: f"INVENTORY_{name.upper()}" for name in DEFAULTS}
ENVIRONMENT["database"] = "INVENTORY_DATABASE_URL"
_CREDENTIALS_FILE = (
    "An export file carries credentials: every API key's hash, and the kept answers of"
    " Idempotency-Keys, which hold the secret of a key made by POST /keys with one until"
    " that answer expires (24 hours by default). A hash cannot be turned back into its key,"
    " but whoever has the file can import those keys into a database they control, and it"
    " holds all of your data: store it, move it and delete it as a secret (chmod 600; never"
    " in a ticket, a chat or a shared folder)."
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
log = logging.getLogger("inventory")


class CliError(Exception):
    """A mistake the user can fix: one line saying what is wrong and what to do."""


class Settings(BaseModel):
    """How ``inventory serve`` runs."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    database: str = DEFAULT_DATABASE
    workers: int = Field(1, ge=1)
    log_format: str = Field("json", pattern=f"^({'|'.join(logs.FORMATS)})$")
    log_level: str = Field("info", pattern=f"^({'|'.join(logs.LEVELS)})$")
    metrics_port: int | None = Field(None, ge=0, le=65535)
    idempotency_ttl: int = Field(DEFAULT_TTL, ge=1, le=MAX_TTL)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``inventory`` console script: every known mistake is one line."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        args.run(args)
    except CliError as error:
        sys.exit(f"inventory: {error}")
    except KeyboardInterrupt:
        sys.exit(130)


class _Parser(argparse.ArgumentParser):
    """argparse, telling a mistake in one line and where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inventory", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    database = _Parser(add_help=False)
    database.add_argument(
        "--database",
        metavar="URL",
        help="sqlite:///relative.db, sqlite:////abs/path.db, a file path, or"
        f" postgresql://user@host:port/db (env INVENTORY_DATABASE_URL; default {DEFAULT_DATABASE})",
    )
    _add_serve(commands, database)
    migrate = commands.add_parser("migrate", parents=[database], help="bring the schema up to date")
    migrate.set_defaults(run=_migrate)
    _add_keys(commands, database)
    export = commands.add_parser(
        "export", parents=[database], help="write the state as JSON Lines", epilog=_CREDENTIALS_FILE
    )
    export.set_defaults(run=_export)
    load = commands.add_parser(
        "import", parents=[database], help="load an export (empty db only)",
        epilog=_CREDENTIALS_FILE,
    )  # fmt: skip
    load.set_defaults(run=_import)
    check = commands.add_parser(
        "check", parents=[database], help="verify every invariant of the stored data"
    )
    check.set_defaults(run=_check)
    return parser


def _add_serve(commands: Any, database: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[database], help="run the HTTP service")
    for name, what in [
        ("host", "address to listen on"),
        ("port", "TCP port to listen on (0: any free port)"),
        (
            "workers",
            "processes serving one port (more than 1 needs PostgreSQL); one that"
            " dies is replaced, and all stop when the main process dies",
        ),
    ]:
        serve.add_argument(
            f"--{name}", help=f"{what} (env {ENVIRONMENT[name]}; default {DEFAULTS[name]})"
        )
    for name, what in [
        ("log-format", "json or text (default: json, or text when stderr is a terminal)"),
        ("log-level", "debug, info, warning or error (default info)"),
        ("metrics-port", "serve GET /metrics on the serve host at this port (default: none)"),
        (
            "idempotency-ttl",
            f"seconds an Idempotency-Key's answer is kept, 1 to {MAX_TTL}"
            f" (default {DEFAULT_TTL}: 24 hours)",
        ),
    ]:
        serve.add_argument(f"--{name}", help=f"{what}; env {ENVIRONMENT[name.replace('-', '_')]}")
    serve.set_defaults(run=_serve)


def _add_keys(commands: Any, database: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", parents=[database], help="create a key; prints it alone")
    create.add_argument("--tenant", required=True, help="the tenant the key works in")
    create.add_argument("--role", required=True, choices=ROLES, help="what the key may do")
    create.set_defaults(run=_keys_create)
    listing = keys.add_parser("list", parents=[database], help="list keys (never their secrets)")
    listing.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", parents=[database], help="revoke a key, by id or whole key")
    revoke.add_argument("key", metavar="KEY_OR_ID")
    revoke.set_defaults(run=_keys_revoke)


# --- settings: flags, then INVENTORY_* variables, then defaults -------------------------


def _setting(args: argparse.Namespace, name: str) -> tuple[str, str]:
    """The value of setting ``name`` as text, and where it came from (flag or variable)."""
    value = getattr(args, name, None)
    if value is not None:
        return value, f"--{name.replace('_', '-')}"
    if ENVIRONMENT[name] in os.environ:
        return os.environ[ENVIRONMENT[name]], ENVIRONMENT[name]
    return DEFAULTS[name], f"--{name.replace('_', '-')}"


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of ``serve``, or CliError naming every bad value and where it came from."""
    given = {name: _setting(args, name) for name in DEFAULTS}
    try:
        settings = Settings.model_validate(_settings_values(given))
    except ValidationError as error:
        raise CliError(
            "; ".join(
                f"{given[str(e['loc'][0])][1]}={given[str(e['loc'][0])][0]!r}: {e['msg']}"
                for e in error.errors()
            )
            + "; correct it (see inventory serve --help)"
        ) from None
    settings.database = _database_url(*given["database"])
    if settings.workers > 1 and not is_postgres(settings.database):
        raise CliError("--workers > 1 needs PostgreSQL; one process owns a SQLite file")
    return settings


def _settings_values(given: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The values of ``given`` as Settings takes them: defaults resolved, case folded."""
    values: dict[str, Any] = {name: value for name, (value, _) in given.items()}
    if values["log_format"] == "auto":
        values["log_format"] = logs.default_format(sys.stderr)
    values["log_level"] = values["log_level"].lower()
    values["metrics_port"] = values["metrics_port"] or None
    return values


def _database(args: argparse.Namespace) -> str:
    return _database_url(*_setting(args, "database"))


def _database_url(url: str, source: str) -> str:
    """``url`` if it names a database this service can use; else CliError saying why."""
    if is_postgres(url):
        return url
    fix = f"give {source} a file path, sqlite:///file.db or postgresql://user@host:port/db"
    if not url.strip():
        raise CliError(f"{source} is empty; {fix}")
    if _SCHEME.match(url) and not url.startswith("sqlite:///"):
        raise CliError(f"{source}={_shown(url)!r} is not a database URL this service knows; {fix}")
    path = Path(sqlite_path(url))
    if not path.parent.is_dir():
        raise CliError(f"the folder {path.parent} does not exist; create it or change {source}")
    if path.is_dir():
        raise CliError(f"{path} is a folder, not a database file; {fix}")
    if path.exists() and path.stat().st_size == 0:
        raise CliError(f"{path} is an empty file, not an inventory database; remove it first")
    return url


# --- the database: opened, used, closed; every known failure one sentence --------------


async def _with_store(database: str, action: Callable[[Store], Awaitable[None]]) -> None:
    with _database_problems(database):
        store = await open_store(database)
    try:
        with _database_problems(database):
            await action(store)
    finally:
        await store.close()


@contextlib.contextmanager
def _database_problems(database: str) -> Iterator[None]:
    """Turn what a wrong or unreachable database raises into a CliError of one line."""
    try:
        yield
    except (NotAnInventoryDatabase, FileOwned, MigrationStopped, BadWaitBudget) as error:
        raise CliError(str(error)) from None
    except sqlite3.Error as error:
        raise CliError(
            f"cannot use {sqlite_path(database)} as an inventory database ({error});"
            " point --database at an inventory database or at a new file"
        ) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        if not is_postgres(database):
            raise CliError(f"cannot use {sqlite_path(database)}: {error}") from None
        raise CliError(_postgres_problem(database, error)) from None


def _postgres_problem(database: str, error: Exception) -> str:
    parts = urlsplit(database)
    where = f"PostgreSQL at {parts.hostname or 'localhost'}:{parts.port or 5432}"
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return f"{where}: {error}; create it (createdb) or fix the name in --database"
    if isinstance(
        error, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return f"{where} refused the login: {error}; fix the user or password in --database"
    if isinstance(error, OSError):
        return (
            f"cannot reach {where} ({_reason(error)}); start it, or fix host and port in --database"
        )
    return f"{where}: {error}"


def _reason(error: OSError) -> str:
    """The operating system's words for ``error``, without the caller's decorations."""
    return os.strerror(error.errno) if error.errno else str(error) or type(error).__name__


# --- serve -------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> None:
    settings = _settings(args)
    logs.configure(settings.log_format, settings.log_level)
    with contextlib.ExitStack() as held:
        if not is_postgres(settings.database):
            with _database_problems(settings.database):
                held.enter_context(owning(sqlite_path(settings.database)))
        listener = held.enter_context(_listen(settings))  # bind first: a busy port says so
        asyncio.run(_bootstrap(settings, listener.getsockname()[1]))
        if settings.workers == 1:
            _run_worker(settings, listener)
        else:
            listener.close()
            _run_workers(settings)


def _listen(settings: Settings) -> socket.socket:
    """A socket listening on the host and port of ``settings``; CliError if it cannot."""
    try:
        return socket.create_server(
            (settings.host, settings.port), backlog=128, reuse_port=settings.workers > 1
        )
    except OSError as error:
        raise CliError(
            f"cannot listen on {settings.host}:{settings.port} ({_reason(error)});"
            " stop what uses that port, or choose another with --port"
        ) from None


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


BACKOFF_FIRST, BACKOFF_MOST = 0.5, 10.0
"""Seconds before a dead worker is replaced: doubled for each worker that dies young."""
STEADY_SECONDS = 60.0
"""A worker that ran this long died of something new: its replacement waits BACKOFF_FIRST."""
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class _Supervisor:
    """Keeps ``settings.workers`` workers running until SIGINT or SIGTERM stops them all.

    A worker that dies is logged (its pid and exit code) and replaced after a backoff, so a
    worker that crashes at start does not spin; during a stop nothing is replaced.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: dict[int, tuple[BaseProcess, float]] = {}  # sentinel -> (worker, since)
        self.due: list[float] = []  # when each pending replacement starts (monotonic)
        self.backoff = BACKOFF_FIRST
        self.stopping = False

    def start_one(self) -> None:
        worker = multiprocessing.get_context("spawn").Process(
            target=_spawned_worker, args=(self.settings, os.getpid())
        )
        worker.start()
        self.running[worker.sentinel] = (worker, time.monotonic())
        if self.stopping:  # a stop came while it was starting
            worker.terminate()

    def stop(self, *_: object) -> None:
        self.stopping = True
        self.due.clear()
        for worker, _since in self.running.values():
            worker.terminate()  # SIGTERM: each worker finishes its requests, then exits

    def reap(self, sentinel: int) -> None:
        worker, since = self.running.pop(sentinel)
        worker.join()
        metrics.mark_dead(worker.pid)
        if self.stopping:
            log.info("worker %s exited with %s", worker.pid, worker.exitcode)
            return
        if time.monotonic() - since >= STEADY_SECONDS:
            self.backoff = BACKOFF_FIRST
        log.warning(
            "worker %s exited with %s; replacing it in %.1f s",
            worker.pid, worker.exitcode, self.backoff,
            extra={"worker": worker.pid, "exitcode": worker.exitcode},
        )  # fmt: skip
        self.due.append(time.monotonic() + self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_MOST)


def _supervise(settings: Settings) -> None:
    supervisor = _Supervisor(settings)
    # SIGINT may reach this process alone (kill -INT) or the whole group (Ctrl-C); either
    # way every worker is asked to stop gracefully, and this process waits for them.
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    for _ in range(settings.workers):
        supervisor.start_one()
    while supervisor.running or supervisor.due:
        timeout = max(0.0, min(supervisor.due) - time.monotonic()) if supervisor.due else None
        for sentinel in wait(list(supervisor.running), timeout):
            supervisor.reap(sentinel)  # type: ignore[arg-type]  # sentinels are ints
        while supervisor.due and min(supervisor.due) <= time.monotonic():
            supervisor.due.remove(min(supervisor.due))
            supervisor.start_one()


def _spawned_worker(settings: Settings, parent: int) -> None:
    """A worker of ``_supervise``: it stops when its parent dies, however that dies."""
    _die_with(parent)
    _run_worker(settings)


def _die_with(parent: int) -> None:
    """Have Linux send SIGTERM (a graceful stop) when ``parent`` dies, even by SIGKILL; exit
    now if it already has. Elsewhere a worker outlives a killed parent (stop it by its pid)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("cannot ask to stop with the parent: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before prctl took effect: nobody would signal
        sys.exit(0)


def _run_worker(settings: Settings, listener: socket.socket | None = None) -> None:
    """One service process, on ``listener`` if given; several share a port (SO_REUSEPORT)."""
    logs.configure(settings.log_format, settings.log_level)  # a spawned worker starts afresh
    if settings.metrics_port is not None:
        metrics.enable()
        if settings.workers == 1:
            _start_metrics(settings)
    where: dict[str, Any] = {"sock": listener} if listener else {"host": settings.host}
    url = f"http://{settings.host}:{listener.getsockname()[1] if listener else settings.port}"
    web.run_app(
        create_app(settings.database, settings.idempotency_ttl),
        port=None if listener else settings.port,
        access_log_class=AccessLog,
        access_log=ACCESS_LOGGER,
        shutdown_timeout=30,
        reuse_port=settings.workers > 1,
        print=lambda _: log.info("serving %s", url, extra={"pid": os.getpid()}),
        **where,
    )
    log.info("stopped", extra={"pid": os.getpid()})


def _start_metrics(settings: Settings) -> None:
    assert settings.metrics_port is not None
    try:
        start_metrics_server(settings.host, settings.metrics_port, metrics.serving_registry())
    except OSError as error:
        raise CliError(
            f"cannot serve metrics on {settings.host}:{settings.metrics_port}"
            f" ({_reason(error)}); choose another --metrics-port"
        ) from None
    log.info("metrics at http://%s:%d/metrics", settings.host, settings.metrics_port)


async def _bootstrap(settings: Settings, port: int) -> None:
    """Migrate; on the very first start create an admin key and show it once, else say how
    to make one."""

    async def first_key(store: Store) -> None:
        if await store.list_keys(None):
            print(f"inventory: no key is shown on a restart; {_how_to_make_a_key(settings)}")
            return
        key, secret = new_key("default", "admin")
        await store.add_key(key)
        print(
            f"Created the first API key (admin, tenant 'default'); it is shown only now:\n"
            f"  export INVENTORY_TOKEN={secret}\n"
            f'  curl -H "Authorization: Bearer $INVENTORY_TOKEN" '
            f"http://{settings.host}:{port}/items",
            flush=True,
        )

    await _with_store(settings.database, first_key)


def _how_to_make_a_key(settings: Settings) -> str:
    database = "" if settings.database == DEFAULT_DATABASE else f" --database {settings.database}"
    if _shown(settings.database) != settings.database:
        database = " --database URL"  # the same URL, whose password is not printed
    return f"to make a key: inventory keys create --tenant default --role admin{database}"


def _shown(url: str) -> str:
    """``url`` as it may be printed: a password in it replaced by ``***``."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


# --- the short commands ------------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> None:
    async def report(store: Store) -> None:
        if store.migrations_applied:
            print(f"inventory: applied {', '.join(store.migrations_applied)}")
        else:
            print("inventory: no migration was pending; the schema is up to date")

    asyncio.run(_with_store(_database(args), report))


def _keys_create(args: argparse.Namespace) -> None:
    try:
        key, secret = new_key(args.tenant, args.role)
    except InvariantViolation as violation:
        raise CliError(f"--{violation.errors[0].field} {violation.errors[0].message}") from None

    async def create(store: Store) -> None:
        await store.add_key(key)
        print(secret)

    asyncio.run(_with_store(_database(args), create))


def _keys_list(args: argparse.Namespace) -> None:
    async def listing(store: Store) -> None:
        print("id\ttenant\trole\tcreated\trevoked")
        for key in await store.list_keys(None):
            print(f"{key.id}\t{key.tenant}\t{key.role}\t{key.created_at}\t{key.revoked_at or '-'}")

    asyncio.run(_with_store(_database(args), listing))


def _keys_revoke(args: argparse.Namespace) -> None:
    key_id = args.key.split("_")[1] if args.key.startswith("inv_") else args.key

    async def revoke(store: Store) -> None:
        if not await store.revoke_key(None, key_id):
            raise CliError(f"no live key {key_id}; see inventory keys list")
        print(f"revoked {key_id}")

    asyncio.run(_with_store(_database(args), revoke))


def _export(args: argparse.Namespace) -> None:
    async def export(store: Store) -> None:
        count = await export_jsonl(store, sys.stdout)
        print(f"inventory: exported {count} records", file=sys.stderr)

    asyncio.run(_with_store(_database(args), export))


def _import(args: argparse.Namespace) -> None:
    database = _database(args)
    try:
        export = parse_export(sys.stdin)  # all of it checked before the database is opened

        async def load(store: Store) -> None:
            await store.import_state(export)

        asyncio.run(_with_store(database, load))
    except ValueError as refusal:  # ImportRefused, or a target that is not empty
        raise CliError(f"nothing imported: {refusal}") from None
    print(
        f"inventory: imported {len(export.keys)} keys, {len(export.items)} items,"
        f" {len(export.events)} events and {len(export.answers)} kept answers",
        file=sys.stderr,
    )


def _check(args: argparse.Namespace) -> None:
    async def check(store: Store) -> None:
        problems = await audit_store(store)
        for problem in problems:
            print(problem)
        if problems:
            raise CliError(f"{len(problems)} invariant violation(s) found")
        print("inventory: every invariant holds", file=sys.stderr)

    asyncio.run(_with_store(_database(args), check))
