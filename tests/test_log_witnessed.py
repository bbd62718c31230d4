"""A site and witnesses in separate processes: cosignatures, quorum, forks, witnesses down.

Witnesses are real ``python -m broadcaster.cli witness`` processes; the site
runs in the test's loop on a real port, submitting in the background as
``BROADCASTER_WITNESSES`` tells it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from conftest import TIMEOUT
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from log_sites import Site, WitnessProcess, log_at, site_vkey, verify

from broadcaster.cli import main
from broadcaster.log.checkpoint import parse_checkpoint
from broadcaster.log.cosignature import Cosigner
from broadcaster.log.note import parse_note
from broadcaster.log.signing import Signer
from broadcaster.settings import Settings

pytestmark = pytest.mark.slow

SEED = Signer(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)).seed()
OTHER_WITNESS = Cosigner("elsewhere.example/w", Ed25519PrivateKey.generate()).vkey


@pytest.fixture
def site_settings(settings: Settings) -> Settings:
    return settings.with_(public_url="http://example.test", signing_key=SEED)


@pytest.fixture
def witnesses(tmp_path: Path, site_settings: Settings) -> Iterator[list[WitnessProcess]]:
    vkey = site_vkey(site_settings)
    started = [
        WitnessProcess(tmp_path / f"w{n}", f"witness{n}.example.org/w", [vkey]).start()
        for n in (1, 2)
    ]
    yield started
    for process in started:
        process.stop()


async def cosigned_at(url: str, size: int, count: int) -> tuple[str, float]:
    """Wait for /log/checkpoint to cover ``size`` with ``count`` cosignatures; return it, when."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        text, checkpoint = await log_at(url, size)
        if len(parse_note(text).signatures) >= 1 + count:
            return text, loop.time()
        assert loop.time() < deadline, text
        await asyncio.sleep(0.05)


async def test_witnesses_cosign_within_5_s_and_verify_requires_the_quorum(
    site_settings: Settings,
    witnesses: list[WitnessProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both witnesses' cosignatures are on /log/checkpoint within 5 s; verify and the archive
    pass with them and fail when a required witness did not cosign."""
    w1, w2 = witnesses
    site = await Site(site_settings.with_(witnesses=(w1.spec, w2.spec))).start()
    try:
        incident = await site.incident(id="flood")
        await site.post(incident)
        posted = asyncio.get_running_loop().time()
        text, at = await cosigned_at(site.url, 2, 2)
        assert at - posted < 5
        names = sorted(sig.name for sig in parse_note(text).signatures[1:])
        assert names == ["witness1.example.org/w", "witness2.example.org/w"]
        both = ["--witness", w1.vkey, "--witness", w2.vkey]
        assert await verify(site.url, incident, *both) == 0
        assert "cosigned by witness1.example.org/w, witness2.example.org/w" in (
            capsys.readouterr().out
        )
        other = ["--witness", w1.vkey, "--witness", OTHER_WITNESS]
        assert await verify(site.url, incident, *other) == 1
        assert "only 1 of the required 2 witnesses" in capsys.readouterr().err
        assert await verify(site.url, incident, *other, "--quorum", "1") == 0
        if site_settings.database_url:
            monkeypatch.setenv("BROADCASTER_DATABASE_URL", site_settings.database_url)
        monkeypatch.setenv("BROADCASTER_PUBLIC_URL", "http://example.test")
        monkeypatch.setenv("BROADCASTER_SIGNING_KEY", SEED)
        archive = tmp_path / "a.json"
        argv = ["export", incident, "--data-dir", str(site_settings.data_dir), "-o", str(archive)]
        assert await asyncio.to_thread(main, argv) == 0
        check = ["verify", "--file", str(archive)]
        assert await asyncio.to_thread(main, [*check, *both]) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(main, [*check, *other]) == 1
        assert "witnesses cosigned the archive's log checkpoint" in capsys.readouterr().err
    finally:
        await site.stop()


@pytest.fixture
async def hanging_witness() -> AsyncIterator[str]:
    """A witness URL that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"{OTHER_WITNESS}@http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()


async def test_a_witness_down_or_hanging_never_slows_a_post(
    site_settings: Settings, hanging_witness: str
) -> None:
    """With one witness hanging and one refusing connections, posts stay fast and the log
    checkpoint is still published (without their cosignatures)."""
    down = f"{OTHER_WITNESS}@http://127.0.0.1:9"
    site = await Site(site_settings.with_(witnesses=(hanging_witness, down))).start()
    try:
        incident = await site.incident()
        slowest = 0.0
        for n in range(30):
            started = time.monotonic()
            await site.post(incident, f"第{n}次通报")
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0
        text, _ = await log_at(site.url, 31)
        assert len(parse_note(text).signatures) == 1
        assert await verify(site.url, incident) == 0
    finally:
        await site.stop()


async def test_a_fork_shown_to_two_witnesses_is_caught(
    site_settings: Settings,
    witnesses: list[WitnessProcess],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The key holder runs two histories under one origin and key, each shown to one witness.
    No checkpoint gets both cosignatures, a reader who saw one history refuses the other, and
    a witness shown the second history refuses it and keeps the evidence."""
    w1, w2 = witnesses
    honest = await Site(site_settings.with_(witnesses=(w1.spec,))).start()
    forked_settings = Settings.from_env(
        {}, data_dir=tmp_path / "fork", public_url="http://example.test", signing_key=SEED,
        witnesses=(w2.spec,),
    )  # fmt: skip
    forked = await Site(forked_settings).start()
    state = str(tmp_path / "state.json")
    both = ["--witness", w1.vkey, "--witness", w2.vkey]
    try:
        for site, body in ((honest, "死亡 1 人"), (forked, "无人员伤亡")):
            incident = await site.incident(id="flood")
            await site.post(incident, body)
        await site.post("flood", "补充通报")  # the fork grows past the honest log
        await cosigned_at(honest.url, 2, 1)
        await cosigned_at(forked.url, 3, 1)
        for site in (honest, forked):
            assert await verify(site.url, "flood", *both) == 1
            assert "only 1 of the required 2" in capsys.readouterr().err
        assert await verify(honest.url, "flood", *both, "--quorum", "1", "--state", state) == 0
        capsys.readouterr()
        assert await verify(forked.url, "flood", *both, "--quorum", "1", "--state", state) == 1
        assert "rewritten or forked" in capsys.readouterr().err
    finally:
        await honest.stop()
        await forked.stop()
    # The forked site now asks both witnesses: the one that saw the honest history refuses.
    forked = await Site(forked_settings.with_(witnesses=(w1.spec, w2.spec))).start()
    try:
        await forked.post("flood", "再次补充")
        _, checkpoint = await log_at(forked.url, 4)
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TIMEOUT
            while True:
                async with session.get(w1.url + "/evidence") as response:
                    evidence = json.loads(await response.text())
                if evidence:
                    break
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
        text, _ = await cosigned_at(forked.url, 4, 1)
        names = [sig.name for sig in parse_note(text).signatures[1:]]
        assert names == ["witness2.example.org/w"]
        assert parse_checkpoint(parse_note(text).text).size >= checkpoint.size
    finally:
        await forked.stop()


async def test_two_nodes_keep_one_log_and_share_its_cosignatures(
    site_settings: Settings, witnesses: list[WitnessProcess]
) -> None:
    """Two nodes on one PostgreSQL store sign the same checkpoints, both submit to the
    witness, and each serves the cosignatures the other collected."""
    if not site_settings.database_url:
        pytest.skip("several nodes share a PostgreSQL store")
    w1, _ = witnesses
    nodes = [await Site(site_settings.with_(witnesses=(w1.spec,))).start() for _ in range(2)]
    try:
        incident = await nodes[0].incident()
        for n in range(10):
            await nodes[n % 2].post(incident, f"第{n}次通报")
        texts = [(await cosigned_at(node.url, 11, 1))[0] for node in nodes]
        sizes = [parse_checkpoint(parse_note(t).text).size for t in texts]
        assert sizes[0] == sizes[1] == 11 and texts[0] == texts[1]
        for node in nodes:
            assert await verify(node.url, incident, "--witness", w1.vkey) == 0
    finally:
        for node in nodes:
            await node.stop()
