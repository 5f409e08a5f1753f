"""API keys by id, kept in one process, for as long as it hears of every revocation.

Every request authenticates, and on PostgreSQL reading its key is a round trip of its own.
A process that LISTENs for revocations (each one NOTIFYs in the revoking transaction) can
keep the keys it has read: a revocation anywhere drops the key here as soon as the
notification arrives (milliseconds). While the listening connection is down the cache is
off and empty, so every lookup reads the database again: it fails closed.

A lookup that read the database while a revocation arrived does not keep what it read
(``generation``): the revocation may have committed after its snapshot.
"""

from __future__ import annotations

from service.store.records import ApiKey


class KeyCache:
    """The keys this process has read, while revocations reach it (``on``)."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._on = False
        self.generation = 0
        """Grows with every revocation heard and every switch: a read begun at another
        generation is not kept."""

    def get(self, key_id: str) -> ApiKey | None:
        """The key, if kept."""
        return self._keys.get(key_id) if self._on else None

    def keep(self, key: ApiKey, read_at: int) -> None:
        """Keep ``key``, read from the database at generation ``read_at``, if nothing was
        revoked since and the cache is on."""
        if self._on and read_at == self.generation:
            self._keys[key.id] = key

    def revoked(self, key_id: str) -> None:
        """A key was revoked (here or in another process): read it anew next time."""
        self._keys.pop(key_id, None)
        self.generation += 1

    def switch(self, on: bool) -> None:
        """On once revocations can be heard; off (and empty) once they cannot."""
        self._keys.clear()
        self._on = on
        self.generation += 1
