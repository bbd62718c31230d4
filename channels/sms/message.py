"""Compose the exact SMS a subscriber receives for an entry, and refuse one that would be cut.

One function, ``entry_message``, builds the text for the sender (``delivery``), the
console's preview (``POST /api/preview``) and the check that runs inside every append
and draft (``fits_check``): what the editor is shown is what the phone receives.

The message is ``【signature】title：text link hint``. For a ``status`` entry the
text opens with what changed (level, status, what to do now, area), then the body.
Nothing is ever cut: a message longer than ``BROADCASTER_SMS_MAX_SEGMENTS`` parts is
refused with 422 ``sms_too_long`` naming the overflow, so the editor shortens it
(a sentence silently dropped, the rescue phone number say, is worse than a refusal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broadcaster.errors import Unprocessable
from broadcaster.settings import Settings
from broadcaster.timeline.model import NewEntry

from .. import i18n
from .text import UCS2_PART, UCS2_SINGLE, compose, encoding_for, segments, septets, utf16_units

UNSUBSCRIBE_HINT = {"zh-CN": "回TD退订", "en": "Reply TD to stop"}
#: Area alerts (``channels.sms.area_alerts``) name the incident's code, for whoever wants
#: every update.
AREA_HINT = {"zh-CN": "回“订阅{code}”收后续 回TD退订", "en": "SUB {code} for updates, TD to stop"}
SHORT_TITLE = 20
#: Large enough that ``compose`` never cuts: the limit is enforced by refusing instead.
UNCUT = 1_000


def short_title(title: str) -> str:
    return title if len(title) <= SHORT_TITLE else title[: SHORT_TITLE - 1] + "…"


def entry_link(settings: Settings, incident_id: str, seq: int) -> str:
    return f"{settings.public_url}/incidents/{incident_id}/entries/{seq}"


def entry_message(
    settings: Settings,
    title: str,
    incident_id: str,
    seq: int,
    record: Mapping[str, Any],
    body: str,
    *,
    area_code: str | None = None,
) -> str:
    """Return the whole SMS for entry ``seq``, never shortened.

    ``area_code`` (the incident's SMS code) makes it an area alert, whose hint tells
    the resident how to follow the incident itself.
    """
    lang = settings.lang
    hint = UNSUBSCRIBE_HINT.get(lang, UNSUBSCRIBE_HINT["zh-CN"])
    if area_code is not None:
        hint = AREA_HINT.get(lang, AREA_HINT["zh-CN"]).format(code=area_code)
    text = body
    if record.get("kind") == "status":
        changes = i18n.change_text(record, lang)
        text = changes + ("\n\n" + body if body.strip() else "")
    return compose(
        signature=settings.sms_signature,
        title=short_title(title),
        body_markdown=text,
        link=entry_link(settings, incident_id, seq),
        unsubscribe_hint=hint,
        max_segments=UNCUT,
    )


def measure(text: str, max_segments: int) -> dict[str, Any]:
    """Return what the gateway bills for ``text``: encoding, units, parts, and the overflow."""
    encoding = encoding_for(text)
    units = septets(text) if encoding == "gsm7" else utf16_units(text)
    parts = segments(text)
    room = (
        (160 if max_segments == 1 else 153 * max_segments)
        if encoding == "gsm7"
        else (UCS2_SINGLE if max_segments == 1 else UCS2_PART * max_segments)
    )
    return {
        "text": text,
        "encoding": encoding,
        "units": units,
        "segments": parts,
        "max_segments": max_segments,
        "fits": parts <= max_segments,
        "over_by": max(0, units - room),
    }


def refuse_if_too_long(measured: Mapping[str, Any]) -> None:
    """Raise 422 ``sms_too_long`` when the message needs more parts than allowed."""
    if measured["fits"]:
        return
    raise Unprocessable(
        f"the SMS would need {measured['segments']} parts, more than the"
        f" {measured['max_segments']} allowed: shorten the text by at least"
        f" {measured['over_by']} characters, or post it without SMS",
        code="sms_too_long",
        field="body",
        sms=dict(measured),
    )


def fits_check(settings: Settings) -> Any:
    """Return an append check refusing an SMS entry whose message would be cut."""

    def check(conn: Any, incident: Mapping[str, Any], new: NewEntry) -> None:
        if not new.sms:
            return
        seq = incident["head"]["seq"] + 1
        record = {
            name: getattr(new, name) for name in ("kind", "severity", "status", "advice", "area")
        }
        # An incident with areas also alerts by area, with the longer hint: check that one.
        code = incident["code"] if incident.get("areas") else None
        text = entry_message(
            settings, incident["title"], incident["id"], seq, record, new.body, area_code=code
        )
        refuse_if_too_long(measure(text, settings.sms_max_segments))

    return check
