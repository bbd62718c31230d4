"""Tests for ``broadcaster.bus_message``: every kind round-trips, anything else is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.bus_message import (
    EntryMessage,
    MalformedMessage,
    Resubscribed,
    decode,
    encode,
    entry_frame,
)
from broadcaster.errors import BroadcasterError
from broadcaster.model import ENTRY_ORDER, Entry
from tests.entry_dicts import make_entry

#: Members of a served entry that ``Entry`` keeps outside its record.
OWN = ("hash", "body", "html", "salt", "redacted", "corrected_by")


def entry(seq: int = 3, text: str | None = None, incident: str = "szk") -> Entry:
    """Build an ``Entry`` as the store returns it, without a database."""
    data = make_entry(seq, text, incident=incident)
    record = {name: data.get(name) for name in ENTRY_ORDER if name not in OWN}
    return Entry(record, data["hash"], data["body"], data["salt"], data["html"])


def wire(seq: object = 3, incident: object = "szk", **entry: object) -> str:
    """Return the text of an entry message on ``incident:szk``, its entry overridden."""
    members = {"incident": incident, "seq": seq, "hash": "sha256:00", **entry}
    return '{"t": 1.5}\n{"type":"entry","entry":' + json.dumps(members) + "}"


def test_an_entry_message_round_trips():
    """Encoding then decoding gives back the same message, topic ``incident:<id>``."""
    message = EntryMessage.of(entry(7), published=1712345678.25)
    topic, text = encode(message)
    assert topic == "incident:szk"
    assert decode(topic, text) == message
    assert (message.incident, message.seq, message.hash) == ("szk", 7, entry(7).hash)


def test_the_entry_frame_is_what_websocket_clients_receive():
    """The frame is ``{"type": "entry", "entry": ...}`` and ``entry_json`` is the entry alone."""
    message = EntryMessage.of(entry(2))
    assert json.loads(message.frame) == {"type": "entry", "entry": entry(2).to_dict()}
    assert message.frame == entry_frame(entry(2))
    assert json.loads(message.entry_json) == entry(2).to_dict()


@given(
    text=st.text(),
    incident=st.text(min_size=1),
    seq=st.integers(min_value=1, max_value=2**62),
    published=st.floats(min_value=0, max_value=2e9),
)
def test_any_entry_text_round_trips(text: str, incident: str, seq: int, published: float):
    """Whatever the entry says (newlines, braces, any script), the message round-trips."""
    message = EntryMessage.of(entry(seq, text, incident), published)
    assert decode(*encode(message)) == message


def test_the_resubscribed_notice_round_trips():
    """``Resubscribed`` travels as ``bus:resubscribed`` with no text."""
    assert encode(Resubscribed()) == ("bus:resubscribed", "")
    assert decode("bus:resubscribed", "") == Resubscribed()


def test_the_layout_is_the_one_earlier_releases_publish():
    """A message as the previous publisher wrote it (header, newline, frame) decodes."""
    frame = '{"type":"entry","entry":{"incident":"a","seq":4,"hash":"h","body":"x\\ny"}}'
    message = decode("incident:a", '{"t": 1712345678.123}\n' + frame)
    assert message == EntryMessage("a", 4, "h", frame, 1712345678.123)


def test_the_message_the_refusals_below_alter_is_well_formed():
    """``wire()`` decodes, so each case below is refused for its one alteration."""
    frame = wire().partition("\n")[2]
    assert decode("incident:szk", wire()) == EntryMessage("szk", 3, "sha256:00", frame, 1.5)


@pytest.mark.parametrize(
    ("topic", "text"),
    [
        ("other-topic", "{}"),
        ("incident", wire()),
        ("bus:resubscribed", "anything"),
        ("incident:szk", "not json\n{}"),
        ("incident:szk", wire().replace("\n", " ")),
        ("incident:szk", wire().replace('{"t": 1.5}', "[1.5]")),
        ("incident:szk", wire().replace('{"t": 1.5}', "{}")),
        ("incident:szk", wire().replace('{"t": 1.5}', '{"t": "1.5"}')),
        ("incident:szk", wire().replace('{"t": 1.5}', '{"t": true}')),
        ("incident:szk", wire().replace('{"t": 1.5}', '{"t": NaN}')),
        ("incident:szk", wire().replace('{"t": 1.5}', '{"t": 1e999}')),
        ("incident:szk", wire()[:-1]),
        ("incident:szk", wire().replace('{"type":"entry",', '{"type": "entry", ')),
        ("incident:szk", '{"t": 1.5}\n{"type":"entry","entry":[1]}'),
        ("incident:szk", '{"t": 1.5}\n{"type":"entry","entry":' + "[" * 100_000 + "}"),
        ("incident:szk", wire(incident="other")),
        ("incident:szk", wire(incident=None)),
        ("incident:szk", wire(seq=None)),
        ("incident:szk", wire(seq=0)),
        ("incident:szk", wire(seq=True)),
        ("incident:szk", wire(seq="3")),
        ("incident:szk", wire(seq=3.0)),
        ("incident:szk", wire(hash=None)),
        ("incident:szk", wire(hash=12)),
    ],
)
def test_malformed_messages_are_refused_with_one_error(topic: str, text: str):
    """A foreign topic or any text off the layout raises ``MalformedMessage``, nothing else."""
    with pytest.raises(MalformedMessage) as refused:
        decode(topic, text)
    assert isinstance(refused.value, BroadcasterError)
