"""What two workloads need in place before they run: answers to replay, a feed to read.

``replay`` retries adjustments whose answers are already stored: ``prime_replays`` sends
each once, under the key ``replay.lua`` sends again. ``feed`` reads pages of the tenant's
change feed: ``fill_feed`` appends events (batches of 100 adjustments of the seeded items)
until the feed holds at least ``FEED_EVENTS``, and ``write_positions`` lists every position
with a full page after it. Everything goes through the API, as a client's would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.servers import Server

FEED_EVENTS = 5000
"""Events the feed holds before the ``feed`` runs (its pages start anywhere in them)."""
PAGE = 100
"""The page ``feed.lua`` asks for (``limit``)."""
_BATCH = 100  # operations per POST /batch, the most the contract allows


def _session(server: Server, token: str) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=16)
    return aiohttp.ClientSession(server.url, headers=headers, connector=connector)


async def _prime(server: Server, token: str, ids: Sequence[str]) -> None:
    async with _session(server, token) as session:

        async def adjust(item_id: str) -> None:
            async with session.post(
                f"/items/{item_id}/adjustments",
                data='{"delta":1}',  # the body replay.lua sends
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": f'"replay-{item_id}"',
                },
            ) as answer:
                answer.raise_for_status()

        await asyncio.gather(*(adjust(item_id) for item_id in ids))


def prime_replays(server: Server, token: str, ids: Sequence[str]) -> None:
    """Adjust each item once under the key ``replay-{id}``, so that sending it again replays."""
    asyncio.run(_prime(server, token, ids))


async def _feed_length(session: aiohttp.ClientSession) -> int:
    after = "0"
    while True:
        async with session.get("/events", params={"after": after, "limit": "1000"}) as answer:
            answer.raise_for_status()
            page = await answer.json()
        if not page["events"]:
            return int(after)
        after = page["next_cursor"]


async def _fill(server: Server, token: str, ids: Sequence[str], events: int) -> int:
    async with _session(server, token) as session:
        missing = events - await _feed_length(session)
        for start in range(0, missing, _BATCH):
            operations = [
                {"op": "adjust", "item_id": ids[n % len(ids)], "delta": 1}
                for n in range(start, start + _BATCH)
            ]
            body = {"operations": operations, "reason": "bench feed"}
            async with session.post("/batch", json=body) as answer:
                answer.raise_for_status()
        return await _feed_length(session)


def fill_feed(server: Server, token: str, ids: Sequence[str], events: int = FEED_EVENTS) -> int:
    """Adjust the items (+1, in batches) until the tenant's feed holds ``events``; its length."""
    return asyncio.run(_fill(server, token, ids, events))


def write_positions(path: Path, length: int) -> Path:
    """Every feed position with a full page after it, one a line: ``feed.lua``'s pool."""
    path.write_text("".join(f"{after}\n" for after in range(length - PAGE + 1)))
    return path
