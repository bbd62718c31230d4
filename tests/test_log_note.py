"""Signed notes, checkpoints and cosignatures of ``broadcaster.log``.

Known answers: the examples of the C2SP documents in ../shared/specs/c2sp/
(signed-note: a vkey and the note it verifies; tlog-checkpoint and
tlog-cosignature: a checkpoint and a cosignature line, whose keys are not
published, so only their parsing, key IDs and timestamp are checked), and the
example key and note of Go's golang.org/x/mod/sumdb/note documentation
(PeterNeumann), whose private key is published, so signing must reproduce its
signature byte for byte (Ed25519 is deterministic).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.log.checkpoint import (
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from broadcaster.log.cosignature import (
    CosignatureVerifier,
    Cosigner,
    cosigned_message,
    timestamp_of,
)
from broadcaster.log.merkle import EMPTY_ROOT
from broadcaster.log.note import (
    MAX_SIGNATURES,
    BadSignature,
    Ed25519Signer,
    Ed25519Verifier,
    MalformedNote,
    Signature,
    UnverifiedNote,
    append_signatures,
    encode_vkey,
    key_id,
    parse_note,
    parse_signature_line,
    parse_vkey,
    sign_note,
    verify_note,
)

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
GO_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 || Ed25519 seed
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
SOFA_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SOFA_LOG_SIG = (
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8="
)
SOFA_COSIG = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def signer(name: str = "log.example/a") -> Ed25519Signer:
    return Ed25519Signer(name, Ed25519PrivateKey.generate())


def test_the_signed_note_spec_example_verifies() -> None:
    """The C2SP vkey example verifies its example note."""
    verifier = Ed25519Verifier.from_vkey(SPEC_VKEY)
    assert verifier.key_id.hex() == "530d903a"
    assert verifier.vkey == SPEC_VKEY
    note = verify_note(SPEC_NOTE, [verifier])
    assert note.text == "This is an example message.\n"
    tampered = SPEC_NOTE.replace("example message", "exemplary message")
    with pytest.raises(BadSignature):
        verify_note(tampered, [verifier])


def test_signing_reproduces_the_go_reference_note() -> None:
    """The published PeterNeumann key signs its text into exactly the published note."""
    raw = base64.b64decode(GO_SEED)
    assert raw[0] == 0x01
    go = Ed25519Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))
    assert go.vkey == GO_VKEY
    assert sign_note(GO_TEXT, [go]) == GO_NOTE
    assert verify_note(GO_NOTE, [Ed25519Verifier.from_vkey(GO_VKEY)]).text == GO_TEXT


def test_the_checkpoint_spec_example_parses() -> None:
    """The C2SP checkpoint example's body and log signature line parse, with its key ID."""
    note = parse_note(SOFA_BODY + "\n" + SOFA_LOG_SIG + "\n")
    checkpoint = parse_checkpoint(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.body == SOFA_BODY
    assert note.signatures[0].key_id.hex() == "033de0ae"


def test_the_cosignature_spec_example_parses() -> None:
    """The C2SP cosignature line carries key ID 8d66cf3f and the example's time 1679315147."""
    sig = parse_signature_line(SOFA_COSIG)
    assert sig.name == "witness.example.com/w1"
    assert sig.key_id.hex() == "8d66cf3f"
    assert timestamp_of(sig.signature) == 1679315147
    assert cosigned_message(SOFA_BODY.encode(), 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + SOFA_BODY.encode()
    )


def test_key_ids_follow_the_spec() -> None:
    """Key ID = SHA-256(name || 0x0A || type || key)[:4], and differs per signature type."""
    a = signer("w.example/1")
    cosigner = Cosigner("w.example/1", Ed25519PrivateKey.generate())
    assert a.key_id == key_id("w.example/1", 0x01, a.public_key)
    assert cosigner.key_id == key_id("w.example/1", 0x04, cosigner.public_key)
    assert parse_vkey(cosigner.vkey).sig_type == 0x04
    assert key_id("n", 0x01, b"k") != key_id("n", 0x04, b"k")


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a",
        "example com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
    ],
)
def test_bad_vkeys_are_refused(vkey: str) -> None:
    """A vkey with a key ID that is not its key's, a bad name or bad base64 is refused."""
    with pytest.raises(MalformedNote):
        Ed25519Verifier.from_vkey(vkey)


def test_unknown_keys_are_ignored_and_known_ones_checked() -> None:
    """Signatures of unknown keys are skipped; a known key's bad signature rejects the note."""
    a, b = signer(), signer("log.example/b")
    impostor = Ed25519Signer(a.name, Ed25519PrivateKey.generate())  # same name, other ID
    note = sign_note("hello\n", [b, impostor, a])
    verified = verify_note(note, [a.verifier()])
    assert [s.name for s in verified.signatures] == [a.name]
    with pytest.raises(UnverifiedNote):
        verify_note(note, [signer("log.example/c").verifier()])
    forged = Signature(a.name, a.key_id, b.sign(b"hello\n"))
    bad = append_signatures(sign_note("hello\n", [b]), [forged.line])
    with pytest.raises(BadSignature):
        verify_note(bad, [a.verifier(), b.verifier()])


@pytest.mark.parametrize(
    "message",
    [
        "no signatures\n",
        "text\n\n",
        "text\n\n— name c2ln\n",
        "text\n\n— name AAAA\n",
        "text\n\n— na+me AAAAAAB=\n",
        "text\n\n- name AAAAAAA=\n",
        "text\n\n— name AAAAAAA=",
        "te\x01xt\n\n— name AAAAAAA=\n",
        "text\r\n\n— name AAAAAAA=\n",
        "\n\n— name AAAAAAA=\n",
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    """Notes without signatures, with control characters or bad signature lines are malformed."""
    with pytest.raises(MalformedNote):
        parse_note(message)


def test_signature_count_is_limited() -> None:
    """At least 16 signatures are accepted, and more than 100 refused."""
    a = signer()
    note = sign_note("text\n", [a])
    junk = [Signature(f"other.example/{i}", b"\x00\x00\x00\x00", b"x").line for i in range(99)]
    full = append_signatures(note, junk)
    assert len(verify_note(full, [a.verifier()]).signatures) == 1
    assert len(parse_note(full).signatures) == MAX_SIGNATURES
    with pytest.raises(MalformedNote):
        parse_note(full + Signature("one.more/x", b"\x00" * 4, b"x").line)


@given(
    origin=st.from_regex(r"[a-z0-9.\-/]{1,40}", fullmatch=True),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(st.from_regex(r"[ -~]{1,20}", fullmatch=True), max_size=3),
)
def test_checkpoints_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    """A signed checkpoint opens to the same checkpoint with the log's key."""
    log = Ed25519Signer(origin, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    opened, note = open_checkpoint(sign_checkpoint(checkpoint, [log]), [log.verifier()])
    assert opened == checkpoint
    assert note.text == checkpoint.body


@pytest.mark.parametrize(
    "body",
    [
        "origin\n01\n" + "A" * 43 + "=\n",
        "origin\n1\n",
        "origin\n-1\n" + "A" * 43 + "=\n",
        "origin\n1\nAAAA\n",
        "origin\n1\n" + "A" * 43 + "=\n\n",
        "\n1\n" + "A" * 43 + "=\n",
        "origin\n1\n" + "A" * 43 + "=",
    ],
)
def test_malformed_checkpoints_are_refused(body: str) -> None:
    """Leading zeroes, short roots, empty lines and missing lines are not checkpoints."""
    with pytest.raises(MalformedNote):
        parse_checkpoint(body)


def test_cosignatures_round_trip() -> None:
    """A cosignature verifies with the witness key on that body only, and records its time."""
    cosigner = Cosigner(
        "witness.example/w1", Ed25519PrivateKey.generate(), clock=lambda: 1700000000.5
    )
    body = Checkpoint("log.example/a", 3, EMPTY_ROOT).body
    sig = cosigner.cosign(body)
    assert timestamp_of(sig.signature) == 1700000000
    verifier = CosignatureVerifier.from_vkey(cosigner.vkey)
    assert verifier.verify(body.encode(), sig.signature)
    assert not verifier.verify(body.replace("3", "4").encode(), sig.signature)
    assert not verifier.verify(body.encode(), sig.signature[:-1])
    note = append_signatures(sign_note(body, [signer("log.example/a")]), [sig.line])
    assert verify_note(note, [verifier]).signatures == (sig,)
    # A plain Ed25519 note key with the same name and key material is a different key.
    plain = Ed25519Verifier(cosigner.name, cosigner.public_key)
    with pytest.raises(UnverifiedNote):
        verify_note(note, [plain])
    with pytest.raises(MalformedNote):
        CosignatureVerifier.from_vkey(encode_vkey(cosigner.name, 0x01, cosigner.public_key))
