"""The witness (``broadcaster witness``) over HTTP, in its own process, and its client.

Each test starts ``python -m broadcaster.cli witness`` on a free loopback port
(``--port 0``; the port is read from the line it prints) with a fresh data
directory, and talks C2SP tlog-witness to it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import TIMEOUT
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from serve_process import ROOT, cli, free_port

from broadcaster.log.checkpoint import Checkpoint, sign_checkpoint
from broadcaster.log.client import WitnessClient, WitnessEndpoint, WitnessError, request_body
from broadcaster.log.cosignature import CosignatureVerifier, Cosigner
from broadcaster.log.merkle import EMPTY_ROOT, MemoryTree, consistency_proof, leaf_hash, tree_root
from broadcaster.log.note import (
    Ed25519Signer,
    Ed25519Verifier,
    b64encode,
    parse_signature_line,
    verify_note,
)
from broadcaster.log.witness import origin_hash, parse_request

pytestmark = pytest.mark.slow

ORIGIN = "news.example.gov.cn/log"
WITNESS_NAME = "witness.example.org/w1"
LOG = Ed25519Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x11" * 32))
TREE = MemoryTree([leaf_hash(b"entry %d" % i) for i in range(16)])
FORK = MemoryTree([leaf_hash(b"entry %d" % i if i < 7 else b"forged %d" % i) for i in range(16)])


class WitnessProcess:
    """One ``broadcaster witness`` process on a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lines: queue.Queue[str] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.vkey = ""

    def start(self) -> WitnessProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.cli", "witness", "--data-dir", str(self.data_dir),
             "--name", WITNESS_NAME, "--log", LOG.vkey, "--port", "0"],
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

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=TIMEOUT) == 0
        self.url = ""

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier.from_vkey(self.vkey)


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[WitnessProcess]:
    process = WitnessProcess(tmp_path / "witness").start()
    yield process
    process.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


def checkpoint(size: int, tree: MemoryTree = TREE, signer: Ed25519Signer = LOG) -> str:
    return sign_checkpoint(Checkpoint(signer.name, size, tree_root(tree, size)), [signer])


def body(size: int, tree: MemoryTree = TREE) -> str:
    return Checkpoint(ORIGIN, size, tree_root(tree, size)).body


async def no_proof(old: int, new: int) -> list[bytes]:
    return []


async def post(
    session: aiohttp.ClientSession, witness: WitnessProcess, request: bytes | str
) -> tuple[int, str, str]:
    data = request.encode() if isinstance(request, str) else request
    async with session.post(witness.url + "/add-checkpoint", data=data) as response:
        return response.status, await response.text(), response.content_type


async def add(
    session: aiohttp.ClientSession, witness: WitnessProcess, old: int, new: int,
    tree: MemoryTree = TREE,
) -> tuple[int, str, str]:  # fmt: skip
    proof = consistency_proof(tree, old, new)
    return await post(session, witness, request_body(old, proof, checkpoint(new, tree)))


async def status(session: aiohttp.ClientSession, witness: WitnessProcess) -> dict:
    async with session.get(witness.url + "/") as response:
        return await response.json()


async def evidence(session: aiohttp.ClientSession, witness: WitnessProcess) -> list[dict]:
    async with session.get(witness.url + "/evidence") as response:
        return (await response.json())["evidence"]


async def test_cosigns_a_growing_log(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """First contact and each consistent extension are cosigned; the cosignature verifies."""
    code, text, _ = await add(session, witness, 0, 5)
    assert code == 200
    line = parse_signature_line(text.removesuffix("\n"))
    assert witness.verifier.verify(body(5).encode(), line.signature)
    assert (await add(session, witness, 5, 9))[0] == 200
    assert (await add(session, witness, 9, 9))[0] == 200
    (log,) = (await status(session, witness))["logs"]
    assert (log["origin"], log["size"], log["evidence"]) == (ORIGIN, 9, 0)
    async with session.get(f"{witness.url}/{origin_hash(ORIGIN)}/checkpoint") as response:
        note = await response.text()
    assert verify_note(note, [LOG.verifier()]).text == body(9)
    assert len(verify_note(note, [witness.verifier]).signatures) == 1
    key = witness.data_dir / "witness.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage",
        "old 05\n\n" + checkpoint(5),
        "old 6\n\n" + checkpoint(5),
        "old 0\nnot-base64\n\n" + checkpoint(5),
        "old 0\n\n" + checkpoint(5).replace("\n\n", "\n"),
        b"old 0\n\n\xff\xfe",
    ],
)
async def test_malformed_requests_answer_400(
    witness: WitnessProcess, session: aiohttp.ClientSession, raw: bytes | str
) -> None:
    """A request that does not parse, or whose old size exceeds the checkpoint's, is a 400."""
    assert (await post(session, witness, raw))[0] == 400


async def test_unknown_origin_answers_404(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """A checkpoint of a log this witness does not follow is a 404."""
    other = Ed25519Signer("other.example/log", Ed25519PrivateKey.generate())
    assert (await post(session, witness, "old 0\n\n" + checkpoint(3, signer=other)))[0] == 404


async def test_untrusted_or_bad_signatures_answer_403(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """No signature by the log's key, or a failing one, is a 403 and cosigns nothing."""
    impostor = Ed25519Signer(ORIGIN, Ed25519PrivateKey.generate())
    assert (await post(session, witness, "old 0\n\n" + checkpoint(3, signer=impostor)))[0] == 403
    forged = checkpoint(3).replace("\n3\n", "\n4\n", 1)
    assert (await post(session, witness, "old 0\n\n" + forged))[0] == 403
    assert (await status(session, witness))["logs"][0]["size"] is None


async def test_stale_old_size_answers_409_with_the_size(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """An old size other than the last cosigned one is a 409 naming that size."""
    assert (await add(session, witness, 0, 5))[0] == 200
    assert await add(session, witness, 0, 9) == (409, "5\n", "text/x.tlog.size")
    assert await add(session, witness, 3, 9) == (409, "5\n", "text/x.tlog.size")
    assert await evidence(session, witness) == []


async def test_inconsistent_requests_answer_422(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """A failing proof, a proof from 0 or between equal sizes, a non-empty size-0 tree: 422."""
    bad_root = Checkpoint(ORIGIN, 0, b"\x01" * 32)
    assert (await post(session, witness, "old 0\n\n" + sign_checkpoint(bad_root, [LOG])))[0] == 422
    proof = consistency_proof(TREE, 3, 5)
    assert (await post(session, witness, request_body(0, proof, checkpoint(5))))[0] == 422
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), [LOG])
    assert (await post(session, witness, "old 0\n\n" + empty))[0] == 200
    assert (await add(session, witness, 0, 5))[0] == 200
    bad = [bytes([h[0] ^ 1]) + h[1:] for h in consistency_proof(TREE, 5, 9)]
    assert (await post(session, witness, request_body(5, bad, checkpoint(9))))[0] == 422
    assert (await post(session, witness, request_body(5, proof, checkpoint(5))))[0] == 422
    assert (await status(session, witness))["logs"][0]["size"] == 5


async def test_a_rollback_is_refused_and_kept(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """A validly signed smaller checkpoint after a larger one is refused and kept as evidence."""
    assert (await add(session, witness, 0, 9))[0] == 200
    code, text, _ = await add(session, witness, 5, 5)
    assert (code, text) == (409, "9\n")
    (kept,) = await evidence(session, witness)
    assert (kept["size"], kept["latest_size"]) == (5, 9)
    assert checkpoint(5) in kept["request"]
    assert (await status(session, witness))["logs"][0]["size"] == 9


async def test_a_fork_is_refused_and_kept(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """Another history signed by the log key, at the same size or grown, is refused and kept."""
    assert (await add(session, witness, 0, 9))[0] == 200
    assert (await post(session, witness, "old 9\n\n" + checkpoint(9, FORK)))[0] == 422
    assert (await add(session, witness, 9, 12, FORK))[0] == 422
    assert (await add(session, witness, 0, 9, FORK))[0] == 409
    kept = await evidence(session, witness)
    assert [(e["size"], e["root_hash"]) for e in kept] == [
        (9, b64encode(tree_root(FORK, 9))),
        (12, b64encode(tree_root(FORK, 12))),
    ]
    log = (await status(session, witness))["logs"][0]
    assert (log["size"], log["evidence"]) == (9, 2)
    assert (await add(session, witness, 9, 12))[0] == 200


async def test_concurrent_requests_cannot_roll_back(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """Of many requests from the same old size, exactly one is cosigned; the rest get 409."""
    answers = await asyncio.gather(*(add(session, witness, 0, n) for n in range(2, 14)))
    codes = sorted(code for code, _, _ in answers)
    assert codes == [200] + [409] * 11
    winner = next(n for n, (code, _, _) in zip(range(2, 14), answers, strict=True) if code == 200)
    assert (await status(session, witness))["logs"][0]["size"] == winner


async def test_state_survives_a_restart(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """After a restart the witness has the same key and still knows what it cosigned."""
    process = WitnessProcess(tmp_path / "w").start()
    try:
        assert (await add(session, process, 0, 5))[0] == 200
        vkey = process.vkey
        process.stop()
        process.start()
        assert process.vkey == vkey
        assert await add(session, process, 0, 9) == (409, "5\n", "text/x.tlog.size")
        assert (await add(session, process, 5, 9))[0] == 200
    finally:
        process.stop()


async def test_the_client_catches_up_and_verifies(
    witness: WitnessProcess, session: aiohttp.ClientSession
) -> None:
    """The client retries with the size a 409 names and returns a verified cosignature line."""
    assert (await add(session, witness, 0, 5))[0] == 200
    endpoint = WitnessEndpoint.parse(f"{witness.vkey}@{witness.url}/")
    client = WitnessClient(endpoint, session, timeout=TIMEOUT)
    asked: list[tuple[int, int]] = []

    async def proofs(old: int, new: int) -> list[bytes]:
        asked.append((old, new))
        return consistency_proof(TREE, old, new)

    line = await client.add_checkpoint(checkpoint(9), proofs)
    assert asked == [(5, 9)] and client.known_size == 9
    assert verify_note(checkpoint(9) + line, [witness.verifier]).signatures[0].line == line
    await client.add_checkpoint(checkpoint(12), proofs)
    assert asked[-1] == (9, 12)
    with pytest.raises(WitnessError) as refused:
        await client.add_checkpoint(checkpoint(12, FORK), proofs)
    assert refused.value.status == 422


async def test_the_client_reports_a_dead_witness(session: aiohttp.ClientSession) -> None:
    """A witness that does not answer is a WitnessError, not a hang."""
    cosigner = Cosigner(WITNESS_NAME, Ed25519PrivateKey.generate())
    endpoint = WitnessEndpoint.parse(f"{cosigner.vkey}@http://127.0.0.1:{free_port()}")
    with pytest.raises(WitnessError):
        await WitnessClient(endpoint, session, timeout=TIMEOUT).add_checkpoint(
            checkpoint(3), no_proof
        )


async def test_the_client_refuses_a_cosignature_by_another_key(
    aiohttp_server, session: aiohttp.ClientSession
) -> None:
    """A 200 whose line is not by the witness's key is a WitnessError."""
    expected = Cosigner(WITNESS_NAME, Ed25519PrivateKey.generate())
    liar = Cosigner(WITNESS_NAME, Ed25519PrivateKey.generate())

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=liar.cosign(body(3)).line)

    app = web.Application()
    app.router.add_post("/add-checkpoint", answer)
    server = await aiohttp_server(app)
    endpoint = WitnessEndpoint.parse(f"{expected.vkey}@http://127.0.0.1:{server.port}")
    with pytest.raises(WitnessError, match="does not verify"):
        await WitnessClient(endpoint, session).add_checkpoint(checkpoint(3), no_proof)


def test_the_command_refuses_a_bad_log_key(tmp_path: Path) -> None:
    """A --log that is not an Ed25519 vkey stops the command with one clear line."""
    cosigner_vkey = Cosigner("x.example/w", Ed25519PrivateKey.generate()).vkey
    done = cli(
        "witness", "--data-dir", str(tmp_path), "--name", "w.example/1", "--log", cosigner_vkey
    )
    assert done.returncode == 2
    assert "not Ed25519" in done.stderr
    assert Ed25519Verifier.from_vkey(LOG.vkey).name == ORIGIN


def test_the_specs_example_request_parses() -> None:
    """The example add-checkpoint body of C2SP tlog-witness parses: old size, proof, note."""
    example = (
        "old 20852014\n"
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
        "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
        "\n"
        "example.com/behind-the-sofa\n"
        "20852163\n"
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        "\n"
        "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
        "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks"
        "+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
    )
    parsed = parse_request(example.encode())
    assert parsed.old_size == 20852014
    assert len(parsed.proof) == 4
    assert parsed.note.startswith("example.com/behind-the-sofa\n20852163\n")
    assert request_body(parsed.old_size, parsed.proof, parsed.note).decode() == example
