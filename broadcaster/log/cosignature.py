"""Cosign checkpoints as a witness: C2SP cosignature/v1 (Ed25519, signature type 0x04).

A cosignature says "as of time T, the largest consistent tree I have seen for
this origin has this root". The signed message is ``cosignature/v1\\n``,
``time T\\n`` and the checkpoint body; the signature is the 8-byte big-endian
timestamp followed by the 64-byte Ed25519 signature. Because the message does
not name the witness, one Ed25519 key must serve one witness only.

``Cosigner`` and ``CosignatureVerifier`` follow the ``Signer`` and
``Verifier`` protocols of ``broadcaster.log.note``, so cosignature lines are
ordinary note signature lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .note import MalformedNote, Signature, check_key_name, encode_vkey, key_id, parse_vkey

SIG_COSIGNATURE_V1 = 0x04
SIGNATURE_SIZE = 8 + 64
MAX_TIMESTAMP = (1 << 63) - 1


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """Return the bytes a cosigner signs for checkpoint ``body`` at ``timestamp``."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp out of range: {timestamp}")
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body


def timestamp_of(signature: bytes) -> int:
    """Return the POSIX time a cosignature (without key ID) was made."""
    if len(signature) != SIGNATURE_SIZE:
        raise MalformedNote("a cosignature/v1 signature is 72 bytes")
    return int.from_bytes(signature[:8], "big")


class Cosigner:
    """Cosign checkpoint bodies with a witness's Ed25519 key."""

    def __init__(
        self, name: str, private: Ed25519PrivateKey, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = check_key_name(name)
        self._private = private
        self.clock = clock
        self.public_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, SIG_COSIGNATURE_V1, self.public_key)

    def __repr__(self) -> str:
        return f"Cosigner({self.name!r}, key_id={self.key_id.hex()})"

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, SIG_COSIGNATURE_V1, self.public_key)

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.public_key)

    def sign(self, text: bytes) -> bytes:
        """Return timestamp || Ed25519 signature over the cosigned message for ``text`` now."""
        timestamp = int(self.clock())
        signed = self._private.sign(cosigned_message(text, timestamp))
        return timestamp.to_bytes(8, "big") + signed

    def cosign(self, body: str) -> Signature:
        """Return the cosignature of checkpoint ``body`` as a signature line record."""
        return Signature(self.name, self.key_id, self.sign(body.encode()))


class CosignatureVerifier:
    """Verify cosignature/v1 signatures of one witness on checkpoint bodies."""

    def __init__(self, name: str, public_key: bytes) -> None:
        self.name = check_key_name(name)
        self.public_key = public_key
        self.key_id = key_id(name, SIG_COSIGNATURE_V1, public_key)
        try:
            self._public = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise MalformedNote("not an Ed25519 public key") from None

    @classmethod
    def from_vkey(cls, text: str) -> CosignatureVerifier:
        vkey = parse_vkey(text)
        if vkey.sig_type != SIG_COSIGNATURE_V1:
            raise MalformedNote(f"vkey {vkey.name} is of type {vkey.sig_type:#04x}, not 0x04")
        return cls(vkey.name, vkey.public_key)

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, SIG_COSIGNATURE_V1, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        timestamp = timestamp_of(signature)
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            self._public.verify(signature[8:], cosigned_message(text, timestamp))
        except InvalidSignature:
            return False
        return True
