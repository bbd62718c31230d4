"""Ed25519 checkpoints: the key on disk, the signature and what refuses a bad one."""

from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broadcaster.errors import ConfigError
from broadcaster.signing import Signer, b64url, unb64url, verify_checkpoint

HEAD = "sha256:" + "ab" * 32


def signed() -> tuple[dict[str, Any], dict[str, Any]]:
    signer = Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    return signer.sign("flood", 3, HEAD, "2026-11-26T06:03:05.123Z"), signer.keys_document()


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    """The first start writes a 0600 key file; the next start signs with the same key."""
    first = Signer.load(tmp_path)
    path = tmp_path / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert Signer.load(tmp_path).key_id == first.key_id


def test_processes_starting_together_on_a_new_data_dir_share_one_key(tmp_path: Path) -> None:
    """``serve`` and ``worker`` started at once (a Procfile) both load the key the first wrote.

    The loser of the race must neither crash on the winner's file (half-written or
    already there) nor sign with a key of its own.
    """
    for attempt in range(20):
        data_dir = tmp_path / str(attempt)
        data_dir.mkdir()
        together = threading.Barrier(8)

        def start(_: int, data_dir: Path = data_dir, together: threading.Barrier = together) -> str:
            together.wait()
            return Signer.load(data_dir).key_id

        with ThreadPoolExecutor(8) as pool:
            key_ids = set(pool.map(start, range(8)))
        assert key_ids == {Signer.load(data_dir).key_id}
        assert [p.name for p in data_dir.iterdir()] == ["signing.key"]


def test_configured_key_is_used_and_never_written(tmp_path: Path) -> None:
    """A key given in configuration signs, and nothing is written to the data directory."""
    signer = Signer.load(tmp_path, b64url(bytes(range(32))) + "=")
    assert signer.key_id == "56475aa75463474c"
    assert not (tmp_path / "signing.key").exists()


@pytest.mark.parametrize("value", ["short", "!!!!", b64url(bytes(31))])
def test_bad_configured_key_names_the_variable(tmp_path: Path, value: str) -> None:
    """A configured key that is not a 32-byte seed stops the start with the variable's name."""
    with pytest.raises(ConfigError, match="BROADCASTER_SIGNING_KEY"):
        Signer.load(tmp_path, value)


def test_repr_hides_the_key() -> None:
    """The signer's repr shows the key id only."""
    signer = Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    assert repr(signer) == "Signer(key_id='56475aa75463474c')"


def test_a_checkpoint_verifies_with_the_published_keys() -> None:
    """A checkpoint verifies against the keys document of the key that signed it."""
    checkpoint, keys = signed()
    assert verify_checkpoint(checkpoint, keys) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("incident", "other"),
        ("seq", 4),
        ("hash", "sha256:" + "ac" * 32),
        ("signed_at", "2026-11-26T06:03:05.124Z"),
    ],
)
def test_a_changed_member_breaks_the_signature(field: str, value: Any) -> None:
    """Changing any signed member makes the signature fail."""
    checkpoint, keys = signed()
    assert verify_checkpoint({**checkpoint, field: value}, keys) == (
        "checkpoint signature does not verify"
    )


def test_another_key_is_refused() -> None:
    """A checkpoint signed by a key that is not published is refused."""
    checkpoint, _ = signed()
    other = Signer(Ed25519PrivateKey.generate()).keys_document()
    assert "not among the published keys" in str(verify_checkpoint(checkpoint, other))


def test_a_key_must_match_its_id() -> None:
    """A published key whose id is not derived from it is refused."""
    checkpoint, keys = signed()
    keys["keys"][0]["public_key"] = b64url(bytes(32))
    assert "does not match its key_id" in str(verify_checkpoint(checkpoint, keys))


def test_non_canonical_base64_signature_is_refused() -> None:
    """Another spelling of the same signature bytes is refused (the text itself was changed)."""
    checkpoint, keys = signed()
    text = checkpoint["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = next(
        c
        for c in alphabet
        if c != text[-1] and (alphabet.index(c) >> 4) == (alphabet.index(text[-1]) >> 4)
    )  # noqa: E501
    assert verify_checkpoint({**checkpoint, "signature": text[:-1] + other}, keys) is not None
    with pytest.raises(ValueError):
        unb64url(text + "=")


@pytest.mark.parametrize(
    "checkpoint",
    [{}, {"key_id": 1, "signature": 2}, [], "x", {"signature": "AA", "key_id": "k"}],
)
def test_malformed_checkpoint_is_reported_not_raised(checkpoint: Any) -> None:
    """Garbage in place of a checkpoint gives a reason, never an exception."""
    _, keys = signed()
    assert isinstance(verify_checkpoint(checkpoint, keys), str)


@pytest.mark.parametrize(
    "keys", [{}, [], {"keys": "x"}, {"keys": [{"key_id": "56475aa75463474c", "public_key": 5}]}]
)  # noqa: E501
def test_malformed_keys_document_is_reported_not_raised(keys: Any) -> None:
    """Garbage in place of the keys document gives a reason, never an exception."""
    checkpoint, _ = signed()
    assert isinstance(verify_checkpoint(checkpoint, keys), str)
