"""Run ``broadcaster serve`` as a real subprocess for end-to-end tests.

The process gets a free loopback port and the given data directory; its
standard output is collected by a thread so the admin token printed on a
brand-new data directory can be read back. Readiness is the port answering
``/readyz``: the token is printed during startup, before the port opens.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"\b(bct_[A-Za-z0-9_-]+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(
    *args: str, data_dir: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run ``broadcaster ARGS`` (the real command line) and return what it did."""
    env = {**os.environ}
    if data_dir is not None:
        env["BROADCASTER_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "broadcaster.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServeProcess:
    """One ``broadcaster serve`` process on a data directory."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.preexec_fn = preexec_fn
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float) -> ServeProcess:
        env = {
            **os.environ,
            "BROADCASTER_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=self.preexec_fn,
        )
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("broadcaster serve exited:\n" + "".join(self.lines))
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1) as response:
                    if response.status == 200 and self._told_all(deadline):
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)  # the port is not open yet; nothing to await across processes
        self.kill()
        raise RuntimeError("broadcaster serve did not become ready:\n" + "".join(self.lines))

    def _told_all(self, deadline: float) -> bool:
        """Wait until the thread has read the start-up output (its last line names descriptors)."""
        while time.monotonic() < deadline:
            if any(line.startswith("File descriptors:") for line in self.lines):
                return True
            time.sleep(0.01)  # another thread reads the pipe; nothing to await across threads
        return False

    def _collect(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def tokens(self) -> list[str]:
        """Return every bearer token the process printed."""
        return TOKEN.findall("".join(self.lines))

    def kill(self) -> None:
        """Kill the process at once (SIGKILL: no cleanup, no flush)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
