"""Sign and verify C2SP signed notes, and encode their verifier keys (vkeys).

A note is a text ending in a newline, a blank line, then signature lines
``— <key name> base64(key ID || signature)``. A verifier knows keys as
(name, key ID) pairs: it ignores signatures from any other key, rejects the
whole note if a known key's signature fails (a malformed note per the spec),
and rejects it unless at least one known key signed. Key IDs are
SHA-256(name || 0x0A || type || public key)[:4], which ``parse_vkey`` checks so
a vkey cannot claim an ID that is not its key's.

This module knows Ed25519 notes (type 0x01); ``broadcaster.log.cosignature``
adds witness cosignatures (type 0x04) through the same ``Signer`` and
``Verifier`` protocols.

Exceptions::

    NoteError (ValueError)
    ├── MalformedNote     the text is not a well-formed note or vkey
    ├── BadSignature      a known key's signature does not verify
    └── UnverifiedNote    no known key signed the note
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIG_ED25519 = 0x01
#: Verifiers must accept at least 16 signatures; beyond this many a note is refused.
MAX_SIGNATURES = 100
DASH = "\u2014"


class NoteError(ValueError):
    """A note or key cannot be trusted."""


class MalformedNote(NoteError):
    """The text is not a well-formed note or verifier key."""


class BadSignature(NoteError):
    """A signature by a known key does not verify."""


class UnverifiedNote(NoteError):
    """No known key signed the note."""


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode standard padded base64, refusing any other spelling of the same bytes."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedNote(f"not base64: {text[:40]!r}") from None
    if b64encode(data) != text:
        raise MalformedNote(f"base64 not in canonical form: {text[:40]!r}")
    return data


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name: non-empty, no spaces, no ``+``."""
    if not name or "+" in name or any(c.isspace() or ord(c) < 0x20 for c in name):
        raise MalformedNote(f"invalid key name {name!r}")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """Return the 4-byte key ID SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VKey:
    """A decoded verifier key: name, key ID, signature type and public key material."""

    name: str
    key_id: bytes
    sig_type: int
    public_key: bytes

    def __str__(self) -> str:
        return (
            f"{self.name}+{self.key_id.hex()}+{b64encode(bytes([self.sig_type]) + self.public_key)}"
        )


def encode_vkey(name: str, sig_type: int, public_key: bytes) -> str:
    """Return the vkey ``<name>+<hex key ID>+<base64(type || public key)>``."""
    return str(VKey(check_key_name(name), key_id(name, sig_type, public_key), sig_type, public_key))


def parse_vkey(text: str) -> VKey:
    """Decode a vkey; MalformedNote unless it is well formed and its key ID matches its key."""
    name, sep, rest = text.strip().partition("+")
    id_hex, sep2, material_b64 = rest.partition("+")
    if not sep or not sep2 or len(id_hex) != 8:
        raise MalformedNote(f"not a vkey: {text[:60]!r}")
    check_key_name(name)
    try:
        claimed = bytes.fromhex(id_hex)
    except ValueError:
        raise MalformedNote(f"vkey key ID is not hex: {id_hex!r}") from None
    if id_hex != claimed.hex():
        raise MalformedNote("vkey key ID must be lowercase hex")
    material = b64decode(material_b64)
    if len(material) < 2:
        raise MalformedNote("vkey has no public key")
    vkey = VKey(name, claimed, material[0], material[1:])
    if key_id(name, vkey.sig_type, vkey.public_key) != claimed:
        raise MalformedNote(f"vkey key ID {id_hex} does not match its key")
    return vkey


class Signer(Protocol):
    """Sign note texts as one key: ``sign`` returns the signature without the key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, text: bytes) -> bytes: ...


class Verifier(Protocol):
    """Check signatures of one key (``signature`` is without the key ID)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool: ...


class Ed25519Signer:
    """Sign notes with an Ed25519 key under a key name (signature type 0x01)."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        self.name = check_key_name(name)
        self._private = private
        self.public_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, SIG_ED25519, self.public_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.name!r}, key_id={self.key_id.hex()})"

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, SIG_ED25519, self.public_key)

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, self.public_key)

    def sign(self, text: bytes) -> bytes:
        return self._private.sign(text)


class Ed25519Verifier:
    """Verify Ed25519 note signatures (type 0x01) of one named key."""

    def __init__(self, name: str, public_key: bytes) -> None:
        self.name = check_key_name(name)
        self.public_key = public_key
        self.key_id = key_id(name, SIG_ED25519, public_key)
        try:
            self._public = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise MalformedNote("not an Ed25519 public key") from None

    @classmethod
    def from_vkey(cls, text: str) -> Ed25519Verifier:
        vkey = parse_vkey(text)
        if vkey.sig_type != SIG_ED25519:
            raise MalformedNote(f"vkey {vkey.name} is of type {vkey.sig_type:#04x}, not Ed25519")
        return cls(vkey.name, vkey.public_key)

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, SIG_ED25519, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key ID and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        """Return the line, with its final newline."""
        return f"{DASH} {self.name} {b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed note: its text (ending in a newline) and its signatures, verified or not."""

    text: str
    signatures: tuple[Signature, ...]

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.line for s in self.signatures)


def _check_text(text: str) -> None:
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise MalformedNote("a note holds no control characters but newlines")


def parse_signature_line(line: str) -> Signature:
    """Parse ``— <name> <base64>`` (without its newline)."""
    prefix = DASH + " "
    if not line.startswith(prefix):
        raise MalformedNote(f"not a signature line: {line[:60]!r}")
    name, sep, blob = line[len(prefix) :].partition(" ")
    if not sep:
        raise MalformedNote(f"signature line without a signature: {line[:60]!r}")
    check_key_name(name)
    raw = b64decode(blob)
    if len(raw) < 5:
        raise MalformedNote("a signature is a 4-byte key ID and at least one byte")
    return Signature(name, raw[:4], raw[4:])


def parse_note(message: str | bytes) -> Note:
    """Split a note into its text and signature lines without checking any signature."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("a note is UTF-8") from None
    _check_text(message)
    if not message.endswith("\n"):
        raise MalformedNote("a note ends with a newline")
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNote("a note has a blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not text.strip("\n"):
        raise MalformedNote("a note has a text")
    lines = block.split("\n")[:-1]
    if not lines:
        raise MalformedNote("a note has at least one signature")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(parse_signature_line(line) for line in lines))


def verify_note(message: str | bytes | Note, verifiers: Iterable[Verifier]) -> Note:
    """Return the note with only the signatures of known keys, each verified.

    Unknown keys (another name or another key ID) are ignored. Raises
    MalformedNote, BadSignature (a known key's signature fails) or
    UnverifiedNote (no known key signed).
    """
    note = message if isinstance(message, Note) else parse_note(message)
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), verifier)
    text = note.text.encode()
    verified: list[Signature] = []
    for sig in note.signatures:
        match = known.get((sig.name, sig.key_id))
        if match is None:
            continue
        if not match.verify(text, sig.signature):
            raise BadSignature(f"the signature of {sig.name} ({sig.key_id.hex()}) does not verify")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        raise UnverifiedNote("no known key signed this note")
    return Note(note.text, tuple(verified))


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Return ``text`` signed by every signer, as a note."""
    if not text.endswith("\n") or not text.strip("\n"):
        raise MalformedNote("a note text is non-empty and ends with a newline")
    _check_text(text)
    if not signers:
        raise ValueError("a note needs at least one signer")
    raw = text.encode()
    sigs = tuple(Signature(s.name, s.key_id, s.sign(raw)) for s in signers)
    return str(Note(text, sigs))


def append_signatures(message: str, lines: Iterable[str]) -> str:
    """Return the note ``message`` with more signature lines (e.g. cosignatures) after its own.

    Each line is parsed first, so nothing but well-formed signature lines is
    ever appended; a line already present is not repeated.
    """
    note = parse_note(message)
    extra = [parse_signature_line(line.rstrip("\n")) for line in lines]
    sigs = list(note.signatures)
    sigs += [s for s in dict.fromkeys(extra) if s not in sigs]
    if len(sigs) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    return str(Note(note.text, tuple(sigs)))
