"""Run a private PostgreSQL cluster on a free loopback port for tests, and break it on purpose.

Usage::

    with running_postgres(directory) as server:
        url = server.create_database()      # a fresh, migrated database
        server.kill()                       # SIGKILL the postmaster, as a crash
        server.start()                      # same port, same data: crash recovery runs

``add_standby`` builds a synchronous standby with ``pg_basebackup`` (the
primary then names it in ``synchronous_standby_names``, so a commit returns
only once the standby has it) and ``promote`` turns it into the primary, as an
operator's failover does. It is never a PostgreSQL that happens to run on the
machine: each cluster is ``initdb``-ed in a temp directory, listens on
127.0.0.1 only, with trust auth. PostgreSQL refuses to run as root, so as root
every server command runs as the ``postgres`` account (Debian's package
creates it). Without the server binaries the tests skip, except under CI
(env ``CI`` set), where they fail loudly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

TIMEOUT = float(os.environ.get("BROADCASTER_TEST_TIMEOUT", "10"))
_names = itertools.count(1)


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def server_bin() -> Path:
    """Return PostgreSQL's bin directory; skip (locally) or fail (under CI) without one."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    reason = "PostgreSQL server binaries are missing: apt-get install -y postgresql"
    if _under_ci():
        pytest.fail(f"{reason}. CI must run the PostgreSQL tests.", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    """Control one PostgreSQL server process: start, SIGKILL, stop, promote."""

    def __init__(self, bin_dir: Path, directory: Path, port: int, *, durable: bool) -> None:
        self.bin = bin_dir
        self.dir = directory
        self.data = directory / "data"
        self.port = port
        self.durable = durable
        self.log = directory / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / args[0]), *args[1:]]),
            check=True,
            capture_output=True,
            timeout=10 * TIMEOUT,
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")  # fmt: skip
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.dir}'",
            "wal_level = replica",
            "max_wal_senders = 4",
            "max_connections = 200",
            "shared_buffers = 64MB",
        ]
        if not self.durable:  # the functional tests' cluster: speed over crash safety
            settings += ["fsync = off", "full_page_writes = off", "synchronous_commit = on"]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                  str(int(3 * TIMEOUT)), "start")  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash); its backends exit on their own."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 3 * TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        # Children notice the dead postmaster and exit; wait for the port to free.
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.02)

    def set(self, line: str) -> None:
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(line + "\n")

    def reload(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "reload")

    def add_standby(self, name: str = "standby1") -> PostgresServer:
        """Build a synchronous standby of this server and start it; return it."""
        standby = PostgresServer(self.bin, self.dir / name, free_port(), durable=self.durable)
        standby.dir.mkdir()
        _chown(standby.dir)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-D", str(standby.data), "-R", "-X", "stream", "--checkpoint=fast")  # fmt: skip
        standby.set(f"port = {standby.port}")
        standby.set(f"unix_socket_directories = '{standby.dir}'")
        standby.set("synchronous_standby_names = ''")
        with (standby.data / "postgresql.auto.conf").open("a") as auto:
            auto.write(
                f"primary_conninfo = 'host=127.0.0.1 port={self.port} user=postgres"
                f" application_name={name}'\n"
            )
        standby.start()
        self.set(f"synchronous_standby_names = 'FIRST 1 ({name})'")
        self.reload()
        deadline = time.monotonic() + 3 * TIMEOUT
        while time.monotonic() < deadline:
            with psycopg.connect(self.url(), autocommit=True) as conn:
                row = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (name,),
                ).fetchone()
            if row and row[0] == "sync":
                return standby
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not become a synchronous standby")

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def create_database(self, template: str | None = None) -> str:
        """Create a fresh database (from ``template`` when given) and return its URL."""
        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@contextlib.contextmanager
def running_postgres(*, durable: bool = True) -> Iterator[PostgresServer]:
    """Start a fresh cluster in a new temp dir; stop it and remove the dir afterwards."""
    bin_dir = server_bin()
    # Not under pytest's tmp dirs: those are private to root, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="broadcaster-pg-"))
    _chown(directory)
    server = PostgresServer(bin_dir, directory, free_port(), durable=durable)
    try:
        server.init()
        server.start()
        yield server
    finally:
        for standby in directory.glob("standby*"):
            PostgresServer(bin_dir, standby, 0, durable=durable).stop()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
