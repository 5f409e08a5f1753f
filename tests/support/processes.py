"""The real ``inventory`` console script in subprocesses, for the tests in ``tests/system``.

``run_inventory`` runs one short command to its end, ``run_inventories`` several at the same
time. ``ServedProcess`` is ``inventory serve`` in the background on a free port: started in
a process group of its own, ready once ``GET /healthz`` answers, and always taken down
(SIGTERM, then SIGKILL to the whole group) when its ``with`` block ends, whatever happened.
Every command gets its settings from the test alone: ``INVENTORY_*`` variables of the
environment the tests run in are left out (``CLEAN_ENV``), and a test adds its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import requests

INVENTORY = Path(sys.executable).parent / "inventory"
CLEAN_ENV = {name: value for name, value in os.environ.items() if not name.startswith("INVENTORY_")}
READY_SECONDS = 30.0
STOP_SECONDS = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_inventory(
    *arguments: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``inventory *arguments`` to its end (``stdin`` fed to it, if given); its outcome."""
    return subprocess.run(
        [str(INVENTORY), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**CLEAN_ENV, **(env or {})},
        timeout=timeout,
        check=False,
    )


def run_inventories(
    *commands: Sequence[str], cwd: Path | None = None, timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``commands`` as ``inventory <command>``, all started at once; their outcomes."""
    processes = [
        subprocess.Popen(
            [str(INVENTORY), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=CLEAN_ENV,
            cwd=cwd,
        )
        for command in commands
    ]
    outcomes = []
    for command, process in zip(commands, processes, strict=True):
        stdout, stderr = process.communicate(timeout=timeout)
        outcomes.append(
            subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)
        )
    return outcomes


class ServedProcess:
    """``inventory serve *flags`` in ``cwd``, as a context manager.

    ``port`` is where it will listen: by default a free port, passed as ``--port``; a test
    that names the port otherwise (in ``flags`` or ``env``) passes it here too. On entry it
    starts the process and waits until ``GET /healthz`` answers 200 (``ready_seconds``); on
    exit it stops every process of the group. ``start`` alone returns at once, for a test
    that looks at the output before the server is ready; ``stop`` must follow.
    """

    def __init__(
        self,
        cwd: Path,
        *flags: str,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        ready_seconds: float = READY_SECONDS,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        self.cwd = cwd
        self.port = free_port() if port is None else port
        self.command = [str(INVENTORY), "serve", *flags]
        if port is None:
            self.command += ["--port", str(self.port)]
        self.env = {**CLEAN_ENV, **(env or {})}
        self.ready_seconds = ready_seconds
        self.stop_seconds = stop_seconds
        output = f"serve-{self.port}-{time.monotonic_ns()}"
        self.stdout_path = cwd / f"{output}.out"
        self.stderr_path = cwd / f"{output}.err"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The main process (the one ``inventory serve`` started as)."""
        assert self._process is not None, "not started"
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def start(self) -> Self:
        """Start the main process and return at once."""
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=err,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # its own process group, so stop() reaches every worker
            )
        return self

    def wait_until_ready(self) -> Self:
        """Wait until ``GET /healthz`` answers 200; AssertionError if it exits or is late."""
        deadline = time.monotonic() + self.ready_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"inventory serve exited with {self.process.returncode}:\n{self.stderr()}"
                )
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError(
            f"inventory serve was not ready within {self.ready_seconds} s:\n{self.stderr()}"
        )

    def send_signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the main process alone, as a process manager would."""
        self.process.send_signal(signum)

    def terminate(self) -> int:
        """SIGTERM to the main process; its exit code (TimeoutExpired after ``stop_seconds``)."""
        self.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=self.stop_seconds)

    def kill(self) -> None:
        """SIGKILL to every process of the group: a crash, with no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=self.stop_seconds)

    def stop(self) -> None:
        """Take down every process this started, however it is doing (idempotent)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=self.stop_seconds)
        self.kill()  # what a SIGTERM left behind: the workers and their helpers too

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
