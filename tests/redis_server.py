"""Run a private ``redis-server`` on a free loopback port for tests, and break it on purpose.

Usage::

    async with running_redis(tmp_path / "redis") as server:
        bus = RedisBus(server.url)
        ...
        await server.kill()      # SIGKILL, as a crash
        await server.restart()   # same port, same directory: the AOF is replayed

The server runs with ``--appendonly yes --appendfsync always`` (what the docs
recommend for zero loss) and no RDB snapshots. It is never a Redis that happens
to run on the machine: each test starts its own on a port the kernel hands out.
Redis cannot bind port 0, so a free port is picked first and a clash is retried
with a fresh one. The process is terminated and waited for in ``finally``.
Without ``redis-server`` the tests skip, except under CI (env ``CI`` set),
where they fail loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

__all__ = ["TIMEOUT", "RedisServer", "require_redis", "running_redis"]

#: Upper bound for every wait on the server (start, restart, exit).
TIMEOUT = float(os.environ.get("BROADCASTER_TEST_TIMEOUT", "10"))
POLL = 0.02
_START_ATTEMPTS = 3


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_redis() -> str:
    """Return the ``redis-server`` path; skip (locally) or fail (under CI) without one."""
    path = shutil.which("redis-server")
    if path:
        return path
    reason = "redis-server is not installed; install it with: apt-get install -y redis-server"
    if _under_ci():
        pytest.fail(f"{reason}. CI must run the Redis tests.", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisStartError(RuntimeError):
    """Signal that redis-server exited or did not answer PING in time."""


class RedisServer:
    """Control one redis-server process: start, SIGKILL, freeze, restart, stop."""

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.binary = binary
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = directory / "redis.log"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the server and return once it answers PING."""
        self._proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        probe = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=TIMEOUT / 10)
        try:
            for _ in range(int(TIMEOUT / POLL)):
                if self._proc.returncode is not None:
                    raise RedisStartError(f"redis-server exited: {self.log_tail()}")
                with contextlib.suppress(Exception):
                    if await probe.ping():
                        return
                await asyncio.sleep(POLL)
            raise RedisStartError(f"redis-server did not answer PING: {self.log_tail()}")
        finally:
            await probe.aclose()

    async def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed beyond what fsync did) and reap it."""
        await self._signal_and_wait(signal.SIGKILL)

    async def stop(self) -> None:
        """Terminate the server gracefully, SIGKILL it if it lingers, and reap it."""
        if self._proc is None:
            return
        if self._proc.returncode is None:
            # A frozen server ignores SIGTERM until continued.
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGCONT)
        try:
            await self._signal_and_wait(signal.SIGTERM)
        except TimeoutError:
            await self.kill()

    async def restart(self) -> None:
        """Start the server again on the same port and directory (replaying its AOF)."""
        await self.stop()
        await self.start()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open but nothing answers."""
        self._send(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a frozen server with SIGCONT."""
        self._send(signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        """Return the end of the server's log, for failure messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])

    def _send(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.returncode is not None:
            raise RuntimeError("redis-server is not running")
        self._proc.send_signal(sig)

    async def _signal_and_wait(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)
        await asyncio.wait_for(self._proc.wait(), TIMEOUT)


@asynccontextmanager
async def running_redis(directory: Path) -> AsyncIterator[RedisServer]:
    """Yield a started :class:`RedisServer` keeping its data in ``directory``."""
    binary = require_redis()
    server = RedisServer(binary, directory, _free_port())
    try:
        for attempt in range(_START_ATTEMPTS):
            try:
                await server.start()
                break
            except RedisStartError:
                await server.stop()
                clash = "Address already in use" in server.log_tail()
                if not clash or attempt == _START_ATTEMPTS - 1:
                    raise
                server.log_path.unlink()
                server = RedisServer(binary, directory, _free_port())
        yield server
    finally:
        await server.stop()
