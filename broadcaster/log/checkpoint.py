"""Write and read C2SP checkpoints: a log's signed statement of its size and root hash.

The body is the origin, the tree size in decimal without leading zeroes, the
base64 root hash, then optional non-empty extension lines, each ending in a
newline. Parsing accepts only that exact spelling: two checkpoints for the
same tree head are then the same text, which is what witnesses cosign.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .merkle import EMPTY_ROOT, HASH_SIZE
from .note import (
    MalformedNote,
    Note,
    Signer,
    Verifier,
    b64decode,
    b64encode,
    sign_note,
    verify_note,
)

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_SIZE = (1 << 63) - 1


@dataclass(frozen=True)
class Checkpoint:
    """One tree head of a log: origin, size, root hash and rarely extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedNote("a checkpoint origin is one non-empty line")
        if not 0 <= self.size <= MAX_SIZE:
            raise MalformedNote(f"tree size out of range: {self.size}")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedNote("a root hash is 32 bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise MalformedNote("extension lines are non-empty single lines")

    @property
    def body(self) -> str:
        """Return the note text of this checkpoint."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @property
    def is_empty_tree_consistent(self) -> bool:
        """Return False for a size-0 checkpoint whose root is not the empty tree's."""
        return self.size != 0 or self.root_hash == EMPTY_ROOT


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text, not its signatures); MalformedNote if off-spec."""
    if not text.endswith("\n"):
        raise MalformedNote("a checkpoint body ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNote("a checkpoint has an origin, a size and a root hash")
    origin, size, root, *extensions = lines
    if not _SIZE.fullmatch(size):
        raise MalformedNote(f"bad tree size line {size[:30]!r}")
    root_hash = b64decode(root)
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def origin_of(message: str) -> str:
    """Return the first line of a note: the origin a checkpoint claims, before any check."""
    return message.split("\n", 1)[0]


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """Return ``checkpoint`` as a signed note."""
    return sign_note(checkpoint.body, signers)


def open_checkpoint(
    message: str | bytes | Note, verifiers: Iterable[Verifier]
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint and parse it; the Note keeps only verified signatures.

    Raises the ``broadcaster.log.note`` errors: MalformedNote, BadSignature,
    UnverifiedNote. The body is parsed only after a trusted key vouched for it.
    """
    note = verify_note(message, verifiers)
    return parse_checkpoint(note.text), note
