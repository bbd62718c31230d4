"""Encode and decode what travels on the bus: one codec for the publisher and every listener.

A bus carries ``(topic, text)`` pairs (``broadcaster.bus``); this module says
what they mean. There are two kinds:

- ``EntryMessage``, on topic ``incident:<id>``: an entry was committed. The
  text is a header line ``{"t": <publish time, epoch seconds>}``, a newline,
  then the entry's frame ``{"type":"entry","entry":{...}}``. The frame is
  exactly what WebSocket clients receive (and SSE, minus the envelope), so it
  is serialised once, by the publisher, whatever the number of readers.
- ``Resubscribed``, on topic ``bus:resubscribed`` with an empty text: a bus
  that reconnected by itself says that messages may have been lost meanwhile,
  so listeners re-read the store. A node's bus says it to its own listeners
  only; it never crosses nodes.

``decode`` raises ``MalformedMessage`` for anything else: a foreign topic, a
text that is not this layout, a frame without the entry's incident, seq or
hash. Listeners log it and skip the message (``broadcaster.bus.listen_forever`` does),
since the store stays the source of truth and viewers catch up from it.

The layout is the one earlier releases published, so nodes of two releases
can share a Redis during a rolling upgrade.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import BroadcasterError
from ..timeline.model import Entry

INCIDENT_TOPIC = "incident:"
RESUBSCRIBED_TOPIC = "bus:resubscribed"
#: The frame's envelope around the entry's JSON: built here, checked by ``decode``.
_FRAME_HEAD = '{"type":"entry","entry":'
_FRAME_TAIL = "}"


class MalformedMessage(BroadcasterError):
    """A bus message this codec cannot read: listeners log it and skip it."""


@dataclass(frozen=True, slots=True)
class EntryMessage:
    """A committed entry: where it belongs, its frame, and when it was published."""

    incident: str
    seq: int
    hash: str
    #: ``{"type":"entry","entry":{...}}``, sent to WebSocket clients as is.
    frame: str
    #: Epoch seconds at publication; 0.0 for a message built from the store.
    published: float = 0.0

    @classmethod
    def of(cls, entry: Entry, published: float = 0.0) -> EntryMessage:
        return cls(entry.incident, entry.seq, entry.hash, entry_frame(entry), published)

    @property
    def entry_json(self) -> str:
        return entry_json(self.frame)


@dataclass(frozen=True, slots=True)
class Resubscribed:
    """The bus reconnected by itself: messages may have been lost meanwhile."""


BusMessage = EntryMessage | Resubscribed


def incident_topic(incident_id: str) -> str:
    """Return the topic on which ``incident_id``'s entries are published."""
    return INCIDENT_TOPIC + incident_id


def entry_frame(entry: Entry) -> str:
    """Return the frame for ``entry``, built from its cached JSON."""
    return _FRAME_HEAD + entry.to_json() + _FRAME_TAIL


def entry_json(frame: str) -> str:
    """Return the entry's JSON alone (``frame`` minus its envelope), without parsing."""
    return frame[len(_FRAME_HEAD) : -len(_FRAME_TAIL)]


def encode(message: BusMessage) -> tuple[str, str]:
    """Return the ``(topic, text)`` to publish for ``message``."""
    if isinstance(message, Resubscribed):
        return RESUBSCRIBED_TOPIC, ""
    header = json.dumps({"t": message.published})
    return incident_topic(message.incident), header + "\n" + message.frame


def decode(topic: str, text: str) -> BusMessage:
    """Return the message ``text`` on ``topic`` stands for; raise ``MalformedMessage``."""
    if topic == RESUBSCRIBED_TOPIC:
        if text:
            raise MalformedMessage(f"{RESUBSCRIBED_TOPIC} carries no text")
        return Resubscribed()
    if not topic.startswith(INCIDENT_TOPIC):
        raise MalformedMessage(f"unknown topic {topic[:80]!r}")
    incident = topic[len(INCIDENT_TOPIC) :]
    head, newline, frame = text.partition("\n")
    if not newline:
        raise MalformedMessage(f"no header line on {topic[:80]!r}")
    published = _number(_object(head, "header").get("t"))
    if not (frame.startswith(_FRAME_HEAD) and frame.endswith(_FRAME_TAIL)):
        raise MalformedMessage(f"not an entry frame on {topic[:80]!r}")
    entry = _object(frame, "frame").get("entry")
    if not isinstance(entry, dict):
        raise MalformedMessage(f"no entry object on {topic[:80]!r}")
    seq, hash_ = entry.get("seq"), entry.get("hash")
    if entry.get("incident") != incident:
        raise MalformedMessage(f"an entry of another incident on {topic[:80]!r}")
    if type(seq) is not int or seq < 1:
        raise MalformedMessage(f"no positive integer seq on {topic[:80]!r}")
    if not isinstance(hash_, str):
        raise MalformedMessage(f"no hash on {topic[:80]!r}")
    return EntryMessage(incident, seq, hash_, frame, published)


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be ours
        raise MalformedMessage(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"the {what} is not a JSON object")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedMessage("the header's publish time 't' is not a finite number")
    return float(value)
