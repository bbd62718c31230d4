"""Run a real Kannel 1.4.5 (bearerbox + smsbox) with a fake SMSC on loopback for tests.

Usage, through the ``kannel`` fixture (tests/conftest.py), which marks the test ``kannel``::

    async with kannel(tmp_path, mo_url="http://127.0.0.1:PORT/sms/inbound") as lab:
        gateway = KannelGateway(lab.sendsms_url, lab.username, lab.password, "12345", None)
        ...
        sender, receiver, text = await lab.smsc.next_mt(TIMEOUT)

Follows the checked recipe (see ``tests/kannel/kannel.conf.tmpl``): bearerbox first, ready when
``status.txt`` says ``Status: running``; then the fake SMSC client, ready when the status shows
``FAKE:<port> (online``; then smsbox, ready when the status lists it on-line and a bare GET on
``/cgi-bin/sendsms`` answers 403. Kannel cannot bind port 0, so free ports are picked first
(a port taken in between is retried with fresh ports). Every child is terminated and waited
for in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from kannel.fake_smsc import FakeSmsc

__all__ = ["TIMEOUT", "KannelLab", "StartKannel", "require_kannel", "running_kannel"]

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
TEMPLATE = Path(__file__).parent / "kannel" / "kannel.conf.tmpl"
#: Upper bound for every wait in gateway tests (readiness, MT/MO/DLR arrival).
TIMEOUT = float(os.environ.get("BROADCASTER_TEST_TIMEOUT", "10"))
USERNAME, PASSWORD = "tester", "foobar"
STATUS_PASSWORD = "statuspw"
MO_QUERY = "from=%p&to=%P&text=%a&msgid=%I"
_POLL = 0.05
_START_ATTEMPTS = 3


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_kannel() -> None:
    """Skip (locally) or fail (under CI) when the Kannel binaries are not installed."""
    missing = [str(p) for p in (BEARERBOX, SMSBOX) if not os.access(p, os.X_OK)]
    if not missing:
        return
    reason = (
        f"Kannel is not installed ({', '.join(missing)} missing); "
        "install it with: apt-get install -y kannel kannel-extras"
    )
    if _under_ci():
        pytest.fail(f"{reason}. CI must run the Kannel gateway tests.", pytrace=False)
    pytest.skip(reason)


class KannelStartError(RuntimeError):
    """Signal that a Kannel process died or did not become ready in time."""

    def __init__(self, message: str, *, port_clash: bool = False) -> None:
        super().__init__(message)
        self.port_clash = port_clash


@dataclass(frozen=True, slots=True)
class _Ports:
    admin: int
    box: int
    fake: int
    sendsms: int


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _mo_service(mo_url: str | None) -> str:
    if mo_url is None:
        # A silent service: MOs are accepted and dropped (max-messages = 0 sends no reply).
        return 'text = "no MO endpoint configured"'
    if any(ch in mo_url for ch in '%"\n'):
        raise ValueError("mo_url must not contain '%', '\"' or newlines")
    sep = "&" if "?" in mo_url else "?"
    return f'get-url = "{mo_url}{sep}{MO_QUERY}"'


class KannelLab:
    """Control a running bearerbox + smsbox + fake SMSC, with helpers to break and heal it.

    Attributes for tests: ``sendsms_url`` (no credentials), ``username``, ``password``,
    ``admin_status_url``, ``smsc`` (:class:`FakeSmsc`), ``run_dir`` (config and logs).
    """

    def __init__(self, run_dir: Path, ports: _Ports, mo_url: str | None) -> None:
        self.run_dir = run_dir
        self.ports = ports
        self.mo_url = mo_url
        self.username, self.password = USERNAME, PASSWORD
        self.sendsms_url = f"http://127.0.0.1:{ports.sendsms}/cgi-bin/sendsms"
        self.admin_status_url = (
            f"http://127.0.0.1:{ports.admin}/status.txt?password={STATUS_PASSWORD}"
        )
        self.smsc = FakeSmsc(ports.fake)
        self.config_path = run_dir / "kannel.conf"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._render_config()

    def _render_config(self) -> None:
        values = {
            "@RUN@": str(self.run_dir),
            "@P_ADMIN@": str(self.ports.admin),
            "@P_BOX@": str(self.ports.box),
            "@P_FAKE@": str(self.ports.fake),
            "@P_SENDSMS@": str(self.ports.sendsms),
            "@MO_SERVICE@": _mo_service(self.mo_url),
        }
        config = TEMPLATE.read_text(encoding="utf-8")
        for key, value in values.items():
            config = config.replace(key, value)
        if leftover := re.findall(r"@[A-Z_]+@", config):
            raise AssertionError(f"unrendered placeholders in kannel.conf: {leftover}")
        self.config_path.write_text(config, encoding="utf-8")

    # -- observation ---------------------------------------------------------------------------

    async def status(self) -> str:
        """Return bearerbox's ``status.txt`` (empty string while it is not answering)."""
        try:
            async with self._session().get(self.admin_status_url) as resp:
                return await resp.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError):
            return ""

    def smsc_online(self, status: str) -> bool:
        """Tell whether ``status`` shows the fake SMSC connection as online."""
        return f"FAKE:{self.ports.fake} (online" in status

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of every Kannel log and console output, for failure messages."""
        out = []
        for path in sorted(self.run_dir.glob("*.log")) + sorted(self.run_dir.glob("*.out")):
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start bearerbox, connect the fake SMSC, start smsbox; return when all are ready."""
        self._spawn("bearerbox", BEARERBOX)
        await self._wait_status(lambda s: "Status: running" in s, "bearerbox running")
        await self.start_smsc()
        self._spawn("smsbox", SMSBOX)
        await self._wait_status(
            lambda s: any("smsbox:" in ln and "on-line" in ln for ln in s.splitlines()),
            "smsbox connected to bearerbox",
        )
        await self._wait_for(self._sendsms_answers_403, "smsbox sendsms port")

    async def stop(self) -> None:
        """Stop smsbox and bearerbox (SIGTERM, then SIGKILL) and drop the SMSC connection."""
        await self.smsc.close()
        for name in ("smsbox", "bearerbox"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                await asyncio.to_thread(_terminate, proc)

    async def restart(self) -> None:
        """Stop and start bearerbox and smsbox again on the same ports and config."""
        await self.stop()
        await self.start()

    async def stop_smsc(self) -> None:
        """Disconnect the fake SMSC and wait until bearerbox no longer reports it online."""
        await self.smsc.close()
        await self._wait_status(lambda s: s and not self.smsc_online(s), "SMSC offline")

    async def start_smsc(self) -> None:
        """Connect the fake SMSC and wait until bearerbox reports it online."""
        await self.smsc.connect()
        await self._wait_status(self.smsc_online, "SMSC online")

    def terminate_all(self) -> None:
        """Synchronously terminate and reap every child; safe to call more than once."""
        while self._procs:
            _, proc = self._procs.popitem()
            _terminate(proc)

    async def aclose(self) -> None:
        """Stop everything and close the status HTTP session."""
        try:
            await self.stop()
        finally:
            self.terminate_all()
            if self._http is not None:
                await self._http.close()
                self._http = None

    # -- helpers -------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        return self._http

    def _spawn(self, name: str, binary: Path) -> None:
        with open(self.run_dir / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                [str(binary), str(self.config_path)],
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def _sendsms_answers_403(self) -> bool:
        try:
            async with self._session().get(self.sendsms_url) as resp:
                return resp.status == 403
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _wait_status(self, predicate: Callable[[str], object], what: str) -> None:
        async def check() -> bool:
            return bool(predicate(await self.status()))

        await self._wait_for(check, what)

    async def _wait_for(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            if await check():
                return
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    tail = self.log_tail()
                    raise KannelStartError(
                        f"{name} exited with {proc.returncode} while waiting for {what}\n{tail}",
                        port_clash="Address already in use" in tail,
                    )
            if loop.time() > deadline:
                raise KannelStartError(
                    f"timed out after {TIMEOUT}s waiting for {what}\n{self.log_tail()}"
                )
            await asyncio.sleep(_POLL)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@asynccontextmanager
async def running_kannel(tmp_path: Path, *, mo_url: str | None) -> AsyncIterator[KannelLab]:
    """Start a loopback Kannel with its fake SMSC; yield a :class:`KannelLab`; tear it all down.

    ``mo_url`` is the project's inbound endpoint (``http://127.0.0.1:PORT/sms/inbound``);
    Kannel calls it as ``GET <mo_url>?from=%p&to=%P&text=%a&msgid=%I`` with UTF-8 text. With
    ``None``, MOs are accepted and dropped.
    """
    require_kannel()
    last_error: KannelStartError | None = None
    for attempt in range(_START_ATTEMPTS):
        run_dir = tmp_path / f"kannel-{attempt}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "store").mkdir(exist_ok=True)  # Kannel's spool for queued MTs
        lab = KannelLab(run_dir, _Ports(*_free_ports(4)), mo_url)
        try:
            try:
                await lab.start()
            except KannelStartError as exc:
                if not exc.port_clash:
                    raise
                last_error = exc
                continue
            yield lab
            return
        finally:
            with contextlib.suppress(Exception):
                await lab.aclose()
            lab.terminate_all()
    raise KannelStartError(f"ports kept clashing after {_START_ATTEMPTS} attempts: {last_error}")


#: What the ``kannel`` fixture gives a test: ``running_kannel`` itself.
StartKannel = Callable[..., AbstractAsyncContextManager[KannelLab]]
