"""One server owns a SQLite file: an OS lock on ``<file>.lock``, held for the server's life.

``inventory serve`` takes the lock before it opens the file and keeps it until it exits; a
second ``serve`` on the same file is refused, naming the process that holds it (its pid is
written into the lock file). The OS releases the lock when its holder dies, however it
dies, so a crash never leaves the file locked. Short commands (``keys``, ``export``) do not
take it: they may run beside the server, as SQLite's own locking allows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


class FileOwned(RuntimeError):
    """Another live process holds the lock of this SQLite file."""


@contextlib.contextmanager
def owning(path: str) -> Iterator[None]:
    """Hold the lock of the SQLite file ``path`` until the block ends; else FileOwned."""
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            process = f"process {holder}" if holder.isdigit() else "another process"
            raise FileOwned(
                f"{path} is served by {process} (it holds {lock_path}); one server owns a"
                " SQLite file: stop that server, or use PostgreSQL for several processes"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
