"""Start nginx with the nchan module on loopback: the fan-out benchmark's reference.

One worker process (the Python server is one process too), its own temporary
prefix and config, a publisher location (``POST /pub``), a WebSocket
subscriber location (``/sub``) and an EventSource one (``/sse``, a comment
ping every 15 s like Broadcaster's heartbeat) on one channel. New subscribers get only
messages published after they connect, like ``after=`` the head.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
CONFIG = """\
user root;
worker_processes 1;
worker_rlimit_nofile {nofile};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
load_module {module};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    nchan_shared_memory_size 256M;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /pub {{
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 100;
        }}
        location = /sub {{
            nchan_subscriber websocket;
            nchan_channel_id bench;
            nchan_subscriber_first_message newest;
            nchan_websocket_ping_interval 25;
        }}
        location = /sse {{
            nchan_subscriber eventsource;
            nchan_channel_id bench;
            nchan_subscriber_first_message newest;
            nchan_eventsource_ping_interval 15;
        }}
    }}
}}
"""


def available() -> bool:
    return MODULE.exists() and Path("/usr/sbin/nginx").exists()


def start(port: int, nofile: int) -> tuple[subprocess.Popen[bytes], Path]:
    """Start nginx in the foreground; return the master process and its prefix."""
    prefix = Path(tempfile.mkdtemp(prefix="bench-nchan-"))
    conf = prefix / "nginx.conf"
    conf.write_text(
        CONFIG.format(
            prefix=prefix, port=port, module=MODULE, nofile=nofile, connections=nofile - 100
        )
    )
    process = subprocess.Popen(
        ["/usr/sbin/nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        if workers(process.pid):
            return process, prefix
        time.sleep(0.05)
    raise RuntimeError("nginx started no worker")


def workers(master: int) -> list[int]:
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
