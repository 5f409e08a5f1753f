"""The ``inventory`` command: serve, migrate, and manage API keys.

Every flag has an ``INVENTORY_*`` environment variable (``--database`` is
``INVENTORY_DATABASE_URL``); a flag given on the command line wins. ``serve`` stops on
SIGINT/SIGTERM: it stops accepting, lets in-flight requests finish, then closes the database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from pydantic import BaseModel, Field

from service.app import create_app
from service.auth import new_key
from service.store import ROLES, Store, open_store

DEFAULT_DATABASE = "sqlite:///inventory.db"


class Settings(BaseModel):
    """How ``inventory serve`` runs."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    database: str = DEFAULT_DATABASE
    workers: int = Field(1, ge=1)


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
    serve = commands.add_parser("serve", parents=[database], help="run the HTTP service")
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="env INVENTORY_HOST")
    serve.add_argument(
        "--port", type=int, default=int(_env("PORT", "8000")), help="env INVENTORY_PORT"
    )
    serve.add_argument(
        "--workers", type=int, default=int(_env("WORKERS", "1")), help="env INVENTORY_WORKERS"
    )
    serve.set_defaults(run=_serve)
    migrate = commands.add_parser("migrate", parents=[database], help="bring the schema up to date")
    migrate.set_defaults(run=_migrate)
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
    return parser


def _serve(args: argparse.Namespace) -> None:
    settings = Settings(
        host=args.host, port=args.port, database=args.database, workers=args.workers
    )
    if settings.workers > 1:
        sys.exit("inventory: --workers > 1 needs PostgreSQL; one process owns a SQLite file")
    asyncio.run(_bootstrap(settings.database))
    web.run_app(
        create_app(settings.database),
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=30,
        print=lambda message: print(message, flush=True),
    )


async def _bootstrap(database: str) -> None:
    """Migrate; on the very first start, create an admin key and show it once."""
    store = await open_store(database)
    try:
        if not await store.list_keys(None):
            key, secret = new_key("default", "admin")
            await store.add_key(key)
            print(
                f"Created the first API key (admin, tenant 'default'); it is shown only now:\n"
                f"  export INVENTORY_TOKEN={secret}\n"
                f'  curl -H "Authorization: Bearer $INVENTORY_TOKEN" http://127.0.0.1:8000/items',
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
    async def create(store: Store) -> None:
        key, secret = new_key(args.tenant, args.role)
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


async def _with_store(database: str, action: Callable[[Store], Awaitable[None]]) -> None:
    store = await open_store(database)
    try:
        await action(store)
    finally:
        await store.close()
