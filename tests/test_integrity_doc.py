"""Check that every value in docs/integrity.md's worked example is true.

Each value is recomputed twice: with the project's own code and with a
re-implementation written here from the document alone (hashlib, json,
cryptography), so neither the code nor the page can drift from the other.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broadcaster.log import chain, records
from broadcaster.log.checkpoint import Checkpoint, sign_checkpoint
from broadcaster.log.merkle import leaf_hash
from broadcaster.log.note import Ed25519Verifier, verify_note
from broadcaster.log.signing import Signer, key_id_of, verify_checkpoint
from broadcaster.log.site import note_signer
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.timeline import markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrity.md"
BLOCK = re.compile(r"<!-- example: (\w+) -->\n```[a-z]*\n(.*?)\n```", re.S)


def examples() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, text in BLOCK.findall(DOC.read_text("utf-8")):
        assert name not in found, f"example {name!r} appears twice"
        found[name] = text
    return found


EX = examples()


# The independent re-implementation, from the document's words only.
def canon(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_every_example_is_present() -> None:
    """The page states every value the example promises, each exactly once."""
    expected = {
        "incident_id", "genesis_hash", "salt", "body", "content_input_hex", "content_hash",
        "record_bytes", "hash", "entry", "signing_seed", "public_key", "key_id",
        "checkpoint_bytes", "checkpoint", "keys", "verifier", "creation_record",
        "creation_hash", "leaf_0", "leaf_1", "leaf_hashes", "log_vkey", "log_checkpoint",
    }  # fmt: skip
    assert set(EX) == expected


def test_genesis_hash() -> None:
    """The genesis hash is SHA-256 of the prefixed incident id, in both implementations."""
    incident = EX["incident_id"]
    assert chain.genesis_hash(incident) == EX["genesis_hash"]
    assert sha(("broadcaster:genesis:" + incident).encode()) == EX["genesis_hash"]


def test_content_hash() -> None:
    """The content hash covers the salt's bytes then the body's UTF-8."""
    data = bytes.fromhex(EX["salt"]) + EX["body"].encode("utf-8")
    assert data.hex() == EX["content_input_hex"]
    assert sha(data) == EX["content_hash"]
    assert chain.content_hash(EX["salt"], EX["body"]) == EX["content_hash"]


def test_record_bytes_and_hash() -> None:
    """The served entry's record encodes to the stated bytes, whose hash is the entry's."""
    entry = json.loads(EX["entry"])
    record = chain.record_of(entry)
    stated = EX["record_bytes"].encode("utf-8")
    assert chain.canonical_json(record) == stated
    assert canon({k: entry[k] for k in chain.HASHED_FIELDS}) == stated
    assert json.loads(stated) == record
    assert sha(stated) == EX["hash"] == chain.entry_hash(record) == entry["hash"]
    assert entry["prev_hash"] == EX["genesis_hash"]
    assert entry["content_hash"] == EX["content_hash"]
    assert (entry["salt"], entry["body"], entry["incident"]) == (
        EX["salt"],
        EX["body"],
        EX["incident_id"],
    )
    assert entry["html"] == markdown.render(entry["body"])


def test_canonical_json_is_jcs_for_our_values() -> None:
    """The documented one-liner equals the project's canonical JSON, escapes included."""
    value = {"b": ['\n\t"\\\x01\x7f', None, True], "a": {"中": 2**53 - 1}, "é": -1}
    assert chain.canonical_json(value) == canon(value)
    expected = '{"a":{"中":9007199254740991},"b":["\\n\\t\\"\\\\\\u0001\x7f",null,true],"é":-1}'
    assert canon(value) == expected.encode()


def test_key_and_key_id() -> None:
    """The test seed gives the stated public key, and the key id is SHA-256's first 16 digits."""
    seed = unb64(EX["signing_seed"])
    assert seed == bytes(range(32))
    signer = Signer.load(Path("/nonexistent"), EX["signing_seed"])
    assert base64.urlsafe_b64encode(signer.public_raw).rstrip(b"=").decode() == EX["public_key"]
    assert signer.key_id == EX["key_id"] == key_id_of(unb64(EX["public_key"]))
    assert hashlib.sha256(unb64(EX["public_key"])).hexdigest()[:16] == EX["key_id"]
    assert signer.keys_document() == json.loads(EX["keys"])


def test_checkpoint_signature() -> None:
    """The checkpoint signs the stated bytes; both implementations agree and verify it."""
    checkpoint = json.loads(EX["checkpoint"])
    signed = {k: checkpoint[k] for k in ("incident", "seq", "hash", "signed_at", "key_id")}
    assert canon(signed) == EX["checkpoint_bytes"].encode("utf-8")
    assert checkpoint["hash"] == EX["hash"]
    private = Ed25519PrivateKey.from_private_bytes(unb64(EX["signing_seed"]))
    expected = base64.urlsafe_b64encode(private.sign(canon(signed))).rstrip(b"=").decode()
    assert checkpoint["signature"] == expected
    private.public_key().verify(unb64(checkpoint["signature"]), canon(signed))
    signer = Signer(private)
    assert (
        signer.sign(
            checkpoint["incident"], checkpoint["seq"], checkpoint["hash"], checkpoint["signed_at"]
        )
        == checkpoint
    )
    assert verify_checkpoint(checkpoint, json.loads(EX["keys"])) is None


def test_project_verifier_accepts_the_example() -> None:
    """``check_timeline`` finds the example timeline intact."""
    report = check_timeline(
        EX["incident_id"],
        [json.loads(EX["entry"])],
        json.loads(EX["checkpoint"]),
        json.loads(EX["keys"]),
    )
    assert report.ok, report.problems


def documented_verifier() -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(EX["verifier"], str(DOC), "exec"), namespace)  # the page's own code
    return namespace["verify"]


def test_documented_verifier_accepts_the_example() -> None:
    """The page's few-line verifier accepts the page's example."""
    verify = documented_verifier()
    head = verify(
        EX["incident_id"],
        [json.loads(EX["entry"])],
        json.loads(EX["checkpoint"]),
        json.loads(EX["keys"]),
    )
    assert head == (1, EX["hash"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", "水位持续上涨，请沿河居民立即转移"),
        ("salt", "5A6C1E0F9B2D4C7E8A1F3B5D7C9E0A2B"),
        ("posted_at", "2026-11-26T06:03:05.124Z"),
        ("figures", {"evacuated": 3400, "injured": 11}),
        ("prev_hash", "sha256:" + "0" * 64),
    ],
)
def test_both_verifiers_refuse_a_changed_example(field: str, value: Any) -> None:
    """Changing one field of the example makes both verifiers refuse it."""
    entry = copy.deepcopy(json.loads(EX["entry"]))
    entry[field] = value
    args = (EX["incident_id"], [entry], json.loads(EX["checkpoint"]), json.loads(EX["keys"]))
    assert not check_timeline(*args).ok
    with pytest.raises(AssertionError):
        documented_verifier()(*args)


def test_log_entries_and_checkpoint() -> None:
    """The log example: creation record, leaves, leaf hashes, root, vkey and signed note."""
    record = EX["creation_record"].encode("utf-8")
    assert canon(json.loads(record)) == record
    assert sha(record) == EX["creation_hash"] == records.creation_hash(json.loads(record))
    leaves = [EX["leaf_0"].encode("utf-8"), EX["leaf_1"].encode("utf-8")]
    incident = EX["incident_id"]
    assert leaves[0] == canon({"hash": EX["creation_hash"], "incident": incident, "seq": 0})
    assert leaves[1] == canon({"hash": EX["hash"], "incident": incident, "seq": 1})
    assert leaves == [records.incident_leaf(incident, 0, EX["creation_hash"]),
                      records.incident_leaf(incident, 1, EX["hash"])]  # fmt: skip
    hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    assert [h.hex() for h in hashes] == EX["leaf_hashes"].split("\n")
    assert hashes == [leaf_hash(leaf) for leaf in leaves]
    note = EX["log_checkpoint"] + "\n"
    text, _, line = note.partition("\n\n")
    origin, size, root = text.split("\n")
    assert (origin, size) == ("news.example.gov.cn/log", "2")
    assert base64.b64decode(root) == hashlib.sha256(b"\x01" + hashes[0] + hashes[1]).digest()
    public = unb64(EX["public_key"])
    key_id = hashlib.sha256(origin.encode() + b"\n\x01" + public).digest()[:4]
    material = base64.b64encode(b"\x01" + public).decode()
    vkey = f"{origin}+{key_id.hex()}+{material}"
    assert vkey == EX["log_vkey"]
    dash, name, signature = line.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", origin)
    raw = base64.b64decode(signature)
    assert raw[:4] == key_id
    private = Ed25519PrivateKey.from_private_bytes(unb64(EX["signing_seed"]))
    private.public_key().verify(raw[4:], (text + "\n").encode())
    verify_note(note, [Ed25519Verifier.from_vkey(EX["log_vkey"])])
    signer = Signer.load(Path("/nonexistent"), EX["signing_seed"])
    checkpoint = Checkpoint(origin, 2, base64.b64decode(root))
    assert sign_checkpoint(checkpoint, [note_signer(signer, origin)]) == note
