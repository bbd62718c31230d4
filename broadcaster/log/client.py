"""Ask a witness to cosign a checkpoint: the log side of C2SP tlog-witness ``add-checkpoint``.

The client remembers the size the witness last cosigned (``known_size``) and
sends a consistency proof from it. When the witness answers 409 with another
size (it restarted from a backup, another node of the site got there first,
or this is the first contact), the client asks ``proofs`` for a proof from
that size and tries again, a few times at most. A 200 answer is checked with
the witness's key before its cosignature line is returned: a line the
witness key did not make is never served as its cosignature.

A witness that is down, slow or refusing raises ``WitnessError``; the caller
decides what that means (the site keeps posting and tries again later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from ..text import decode_bytes
from .checkpoint import parse_checkpoint
from .cosignature import CosignatureVerifier
from .note import Note, NoteError, b64encode, parse_note, parse_signature_line, verify_note

#: ``proofs(old_size, new_size)`` -> the consistency proof between the two sizes.
ProofSource = Callable[[int, int], Awaitable[Sequence[bytes]]]
MAX_ATTEMPTS = 3
SIZE_TYPE = "text/x.tlog.size"


class WitnessError(Exception):
    """The witness could not be reached, refused the checkpoint, or answered wrongly."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness as a log knows it: its cosignature key and submission URL prefix."""

    verifier: CosignatureVerifier
    url: str

    @classmethod
    def parse(cls, spec: str) -> WitnessEndpoint:
        """Parse ``VKEY@URL`` (as in ``BROADCASTER_WITNESSES``); ValueError if malformed."""
        for scheme in ("@https://", "@http://"):
            vkey, sep, rest = spec.strip().partition(scheme)
            if sep:
                return cls(CosignatureVerifier.from_vkey(vkey), scheme[1:] + rest.rstrip("/"))
        raise ValueError(f"a witness is VKEY@http(s)://...: {spec[:80]!r}")


def request_body(old_size: int, proof: Sequence[bytes], signed_checkpoint: str) -> bytes:
    """Return the ``add-checkpoint`` request body."""
    lines = [f"old {old_size}", *(b64encode(h) for h in proof)]
    return ("\n".join(lines) + "\n\n" + signed_checkpoint).encode()


class WitnessClient:
    """Submit checkpoints to one witness over a shared aiohttp session."""

    def __init__(
        self,
        endpoint: WitnessEndpoint,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        known_size: int = 0,
    ) -> None:
        self.endpoint = endpoint
        self.known_size = known_size
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def add_checkpoint(self, signed_checkpoint: str, proofs: ProofSource) -> str:
        """Return the witness's verified cosignature line (ending in a newline) for the checkpoint.

        ``signed_checkpoint`` is the log's signed note; ``proofs`` supplies
        consistency proofs from whatever size the witness last cosigned.
        """
        text = parse_note(signed_checkpoint).text
        size = parse_checkpoint(text).size
        old = self.known_size if self.known_size <= size else 0
        for _ in range(MAX_ATTEMPTS):
            proof = await proofs(old, size) if 0 < old < size else []
            status, answer, content_type = await self._post(
                request_body(old, proof, signed_checkpoint)
            )
            if status == 200:
                line = self._verified_line(text, answer)
                self.known_size = size
                return line
            if status == 409 and content_type == SIZE_TYPE:
                old = self._parse_size(answer)
                self.known_size = old
                if old > size:
                    raise WitnessError(f"the witness cosigned a larger tree ({old})", status)
                continue
            raise WitnessError(f"the witness answered {status}: {answer.strip()[:200]}", status)
        raise WitnessError(f"the witness kept answering 409 (size {old})", 409)

    async def _post(self, body: bytes) -> tuple[int, str, str]:
        url = self.endpoint.url + "/add-checkpoint"
        try:
            async with self._session.post(url, data=body, timeout=self._timeout) as response:
                answer = decode_bytes(await response.read())
                return response.status, answer, response.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WitnessError(f"cannot reach the witness at {url}: {exc!r}") from exc

    def _verified_line(self, text: str, answer: str) -> str:
        try:
            sigs = tuple(parse_signature_line(line) for line in answer.splitlines())
            verified = verify_note(Note(text, sigs), [self.endpoint.verifier])
        except NoteError as exc:
            raise WitnessError(f"the witness's answer does not verify: {exc}", 200) from exc
        return verified.signatures[0].line

    @staticmethod
    def _parse_size(answer: str) -> int:
        number = answer.removesuffix("\n")
        if not number.isascii() or not number.isdigit() or number != str(int(number)):
            raise WitnessError(f"the witness sent a malformed size {answer[:40]!r}", 409)
        return int(number)
