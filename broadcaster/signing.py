"""Sign checkpoints of a timeline head with Ed25519.

A checkpoint is ``{"incident", "seq", "hash", "signed_at", "key_id"}``; the
signature is Ed25519 over the canonical JSON of exactly those five members
(see ``broadcaster.chain.canonical_json``), encoded as unpadded base64url.
``key_id`` is the first 16 hex digits of SHA-256 over the raw 32-byte public
key, so a verifier can check that a key matches its id.

The private key lives in ``DATA_DIR/signing.key`` (raw 32 bytes, mode 0600),
generated on first start, unless ``BROADCASTER_SIGNING_KEY`` gives it as
base64url; a key given in configuration is never written to disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .chain import canonical_json
from .errors import ConfigError

CHECKPOINT_FIELDS = ("incident", "seq", "hash", "signed_at", "key_id")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decode unpadded base64url, refusing any other spelling of the same bytes.

    Python's decoder ignores the unused low bits of the last character and
    drops characters outside the alphabet, so several texts decode to one
    signature; a verifier must notice when a published text was changed.
    """
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not canonical unpadded base64url")
    return data


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


class Signer:
    """Hold one Ed25519 key and sign checkpoints with it."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id_of(self.public_raw)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @property
    def private(self) -> Ed25519PrivateKey:
        """Return the private key, for the log's signed notes and key announcements."""
        return self._private

    def seed(self) -> str:
        """Return the private key as ``BROADCASTER_SIGNING_KEY`` takes it (base64url seed)."""
        return b64url(self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    @classmethod
    def load(cls, data_dir: Path, configured: str | None = None) -> Signer:
        """Load the configured key, else the data directory's, else create one there."""
        if configured:
            try:
                raw = unb64url(configured.strip().rstrip("="))
                return cls(Ed25519PrivateKey.from_private_bytes(raw))
            except ValueError:
                raise ConfigError(
                    "BROADCASTER_SIGNING_KEY must be a 32-byte Ed25519 seed in base64url"
                ) from None
        path = data_dir / "signing.key"
        if not path.exists():
            _create_key_file(path)
        return cls(Ed25519PrivateKey.from_private_bytes(path.read_bytes()))

    def sign(self, incident: str, seq: int, head_hash: str, signed_at: str) -> dict[str, Any]:
        body = {
            "incident": incident,
            "seq": seq,
            "hash": head_hash,
            "signed_at": signed_at,
            "key_id": self.key_id,
        }
        return {**body, "signature": b64url(self._private.sign(canonical_json(body)))}

    def keys_document(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "key_id": self.key_id,
                    "algorithm": "Ed25519",
                    "public_key": b64url(self.public_raw),
                }
            ]
        }


def verify_checkpoint(checkpoint: dict[str, Any], keys: dict[str, Any]) -> str | None:
    """Return ``None`` if the checkpoint's signature is good, else what is wrong."""
    try:
        key_id = checkpoint["key_id"]
        signature = unb64url(checkpoint["signature"])
        body = {name: checkpoint[name] for name in CHECKPOINT_FIELDS}
    except (KeyError, TypeError, ValueError) as exc:
        return f"checkpoint is malformed ({exc})"
    listed = keys.get("keys") if isinstance(keys, dict) else None
    if not isinstance(listed, list):
        return "the keys document has no 'keys' list"
    by_id = {k.get("key_id"): k for k in listed if isinstance(k, dict)}
    key = by_id.get(key_id)
    if key is None:
        return f"checkpoint key {key_id!r} is not among the published keys"
    try:
        raw = unb64url(key["public_key"])
    except (KeyError, TypeError, ValueError):
        return f"public key {key_id!r} is malformed"
    if key_id_of(raw) != key_id:
        return f"public key does not match its key_id {key_id!r}"
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, canonical_json(body))
    except (InvalidSignature, ValueError):
        return "checkpoint signature does not verify"
    return None


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless another process gets there first.

    ``serve`` and ``worker`` started together on a new data directory both
    arrive here. The key is written and synced under a name of this process's
    own, then hard-linked into place: the link appears complete or not at all,
    and fails if the other process's key is already there, which is then the
    one both use.
    """
    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    fd, temporary = tempfile.mkstemp(prefix=".signing.key.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
