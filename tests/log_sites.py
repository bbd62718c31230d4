"""Helpers for the site-log tests: witnesses in their own processes, sites on real ports.

``WitnessProcess`` runs ``python -m broadcaster.cli witness`` for given log
keys and reads back its vkey and address. ``Site`` runs the whole app in the
test's loop on a fixed port, so it can be stopped and started again on the
same data (a restart, a key change). ``log_at`` waits until ``/log/checkpoint``
covers a size.
"""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from conftest import TIMEOUT
from serve_process import ROOT, free_port

from broadcaster.app import create_app
from broadcaster.auth.tokens import TOKENS
from broadcaster.cli import main
from broadcaster.log.checkpoint import Checkpoint, parse_checkpoint
from broadcaster.log.note import parse_note
from broadcaster.log.signing import Signer
from broadcaster.log.site import vkey_of
from broadcaster.settings import Settings


class WitnessProcess:
    """One ``broadcaster witness`` process trusting the given log keys."""

    def __init__(self, data_dir: Path, name: str, log_vkeys: list[str]) -> None:
        self.data_dir = data_dir
        self.name = name
        self.log_vkeys = log_vkeys
        self.lines: queue.Queue[str] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.vkey = ""

    def start(self) -> WitnessProcess:
        logs = [arg for vkey in self.log_vkeys for arg in ("--log", vkey)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.cli", "witness", "--data-dir", str(self.data_dir),
             "--name", self.name, *logs, "--port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [self.lines.put(x) for x in stdout], daemon=True).start()
        while not self.url:
            line = self.lines.get(timeout=TIMEOUT)
            if match := re.match(r"witness vkey: (\S+)", line):
                self.vkey = match[1]
            if match := re.match(r"witness listening on (http://\S+)/", line):
                self.url = match[1]
        return self

    @property
    def spec(self) -> str:
        """This witness as ``BROADCASTER_WITNESSES`` lists it."""
        return f"{self.vkey}@{self.url}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=TIMEOUT) == 0
        self.url = ""


def site_vkey(settings: Settings) -> str:
    """Return the log vkey the site on ``settings`` will have (its key is made now if new)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    signer = Signer.load(settings.data_dir, settings.signing_key)
    return vkey_of(settings.origin, signer.public_raw)


class Site:
    """The app on 127.0.0.1:port over ``settings``; stop and start keep the port and data."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.token = ""

    async def start(self) -> Site:
        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        _, self.token = await self.app[TOKENS].create("值班编辑", "应急管理局", "admin")
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            assert response.status in (200, 201), await response.text()
            return await response.json()

    async def incident(self, **fields: Any) -> str:
        body = {"title": "崂山区沙子口街道山洪", "severity": "severe", **fields}
        return str((await self.call("POST", "/api/incidents", body))["id"])

    async def post(self, incident: str, body: str = "水位持续上涨，请立即转移。") -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "POST", f"/api/incidents/{incident}/entries", {"body": body}
        )
        return result


async def log_at(base_url: str, size: int) -> tuple[str, Checkpoint]:
    """Wait until the log checkpoint served at ``base_url`` covers ``size`` leaves."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(base_url.rstrip("/") + "/log/checkpoint") as response:
                text = await response.text()
            if response.status == 200:
                checkpoint = parse_checkpoint(parse_note(text).text)
                if checkpoint.size >= size:
                    return text, checkpoint
            assert loop.time() < deadline, f"the log did not reach size {size}: {text}"
            await asyncio.sleep(0.05)


async def verify(base_url: str, incident: str, *extra: str) -> int:
    """Run ``broadcaster verify`` in a thread, as the command line does; return its exit code."""
    return await asyncio.to_thread(main, ["verify", base_url, incident, *extra])
