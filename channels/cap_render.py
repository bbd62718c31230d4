"""Render timeline entries as CAP 1.2 alerts (OASIS Common Alerting Protocol).

Pure functions: plain dicts shaped as in the public contract go in, UTF-8 bytes come out.
The alert is built as lxml elements in the CAP 1.2 namespace, never by joining strings.

Trade-offs:

- One alert per entry. Each alert after the first references only the entry just before it
  (``msgType`` Update), and a ``status`` entry that resolves the incident is a Cancel that
  references that same previous alert. Every Update supersedes its predecessor, so one
  reference is enough to chain them. Receivers that need the whole history can walk the chain.
- ``sent`` loses the milliseconds of ``posted_at``: the CAP schema allows neither a fraction
  nor "Z", so the time is written as ``YYYY-MM-DDThh:mm:ss+00:00``. Identifiers carry the seq,
  so two entries posted in the same second still get distinct identifiers.
- Figures become ``<parameter>``s named by their contract key (``deaths``, ``x-...``), not by
  a Chinese label: CAP has no standard vocabulary for casualty counts, and keys are what
  machines match on.
- The description is the visible text of the sanitised ``html``; ``body`` is never read. A
  redacted entry keeps its identifier and ``sent`` (so later references still resolve), but
  its description is the redaction notice and it carries no figures.
- A bad ``sender``, category or chain (``previous`` that is not the entry just before) raises
  ``ValueError``: it is a caller or configuration bug, and a wrong alert would mislead the
  systems that relay it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from broadcaster.text import html_to_text, xml_safe
from channels.feed_render import entry_label, entry_url
from channels.i18n import change_text

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CATEGORIES = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
_CATEGORY_BY_NAME = {name.lower(): name for name in CAP_CATEGORIES}
_URGENCY = {
    "extreme": "Immediate",
    "severe": "Immediate",
    "moderate": "Expected",
    "minor": "Future",
}
#: ``geocode`` value names: national division codes, and the finer codes a site defines.
GB_T_2260 = "GB/T 2260"
SITE_AREA_CODE = "site-area-code"
_SEVERITY = {"extreme": "Extreme", "severe": "Severe", "moderate": "Moderate", "minor": "Minor"}
# CAP 1.2 §3.2.1: identifier and sender must not contain spaces, commas, "<" or "&".
_CAP_FORBIDDEN = re.compile(r"[\s,<&]")


def _cap_time(value: str) -> str:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _checked(name: str, value: str) -> str:
    if not value or _CAP_FORBIDDEN.search(value) or xml_safe(value) != value:
        raise ValueError(f"CAP {name} must be non-empty without spaces, commas, < or &: {value!r}")
    return value


def cap_identifier(sender: str, entry: Mapping[str, Any]) -> str:
    """Return the alert identifier of an entry: ``{sender}.{incident}.{seq}``."""
    return _checked("identifier", f"{sender}.{entry['incident']}.{int(entry['seq'])}")


def _category(category: str) -> str:
    try:
        return _CATEGORY_BY_NAME[category.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown CAP category {category!r}; use one of {CAP_CATEGORIES}"
        ) from None


def geocode_name(code: str) -> str:
    """Return the ``valueName`` of an area code: GB/T 2260 for six digits, else the site's own."""
    return GB_T_2260 if len(code) == 6 and code.isdigit() else SITE_AREA_CODE


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = xml_safe(text)
    return element


def _msg_type(entry: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str:
    if previous is None:
        return "Alert"
    if entry.get("kind") == "status" and entry.get("status") == "resolved":
        return "Cancel"
    return "Update"


def _check_chain(entry: Mapping[str, Any], previous: Mapping[str, Any] | None) -> None:
    seq = int(entry["seq"])
    if previous is None:
        if seq != 1:
            raise ValueError(f"entry {seq} needs the previous entry to reference")
        return
    if previous["incident"] != entry["incident"] or int(previous["seq"]) != seq - 1:
        raise ValueError(
            f"previous must be entry {seq - 1} of {entry['incident']!r}, "
            f"got {previous['seq']} of {previous['incident']!r}"
        )


def render_cap(
    incident: Mapping[str, Any],
    entry: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    *,
    public_url: str,
    sender: str,
    sender_name: str,
    category: str = "Safety",
    language: str = "zh-CN",
    areas: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Render one entry as a CAP 1.2 alert; ``previous`` is the entry just before, or None.

    ``areas`` are the incident's ``(code, name)`` pairs: each becomes an ``<area>`` with its
    name as ``areaDesc`` and its code as a ``geocode`` (without any, the free-text ``area``).

    Raises ``ValueError`` for a sender or category CAP rejects, or a ``previous`` that is not
    entry ``seq - 1`` of the same incident.
    """
    _checked("sender", sender)
    _check_chain(entry, previous)
    cap_category = _category(category)
    severity = str(incident.get("severity") or "").lower()
    redacted = bool(entry.get("redacted"))

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(alert, "identifier", cap_identifier(sender, entry))
    _sub(alert, "sender", sender)
    _sub(alert, "sent", _cap_time(entry["posted_at"]))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", _msg_type(entry, previous))
    _sub(alert, "scope", "Public")
    if previous is not None:
        reference = (cap_identifier(sender, previous), _cap_time(previous["posted_at"]))
        _sub(alert, "references", ",".join((sender, *reference)))
    _sub(alert, "incidents", _checked("incident id", str(entry["incident"])))

    info = _sub(alert, "info")
    _sub(info, "language", language)
    _sub(info, "category", cap_category)
    title = xml_safe(incident.get("title")).strip() or str(incident.get("id", ""))
    _sub(info, "event", title)
    _sub(info, "urgency", _URGENCY.get(severity, "Unknown"))
    _sub(info, "severity", _SEVERITY.get(severity, "Unknown"))
    _sub(info, "certainty", "Observed")
    if entry.get("event_time"):
        _sub(info, "onset", _cap_time(entry["event_time"]))
    _sub(info, "senderName", sender_name)
    _sub(info, "headline", f"{title} · {entry_label(entry, language)}")
    description = html_to_text(entry.get("html"), keep_lines=True)
    if entry.get("kind") == "status":
        # What changed leads: receivers relay the description, not our chained fields.
        changed = change_text(entry, language)
        description = "\n".join(filter(None, (changed, description)))
    if description:
        _sub(info, "description", description)
    advice = (
        xml_safe(incident.get("advice")).strip() if incident.get("status") != "resolved" else ""
    )
    if advice:
        _sub(info, "instruction", advice)
    _sub(info, "web", entry_url(public_url, entry["incident"], entry["seq"]))
    figures = entry.get("figures") or {}
    for key, value in ({} if redacted else figures).items():
        parameter = _sub(info, "parameter")
        _sub(parameter, "valueName", str(key))
        _sub(parameter, "value", str(value))
    if not areas:
        area = _sub(info, "area")
        _sub(area, "areaDesc", xml_safe(incident.get("area")).strip() or title)
    for code, name in areas:
        area = _sub(info, "area")
        _sub(area, "areaDesc", xml_safe(name).strip() or code)
        geocode = _sub(area, "geocode")
        _sub(geocode, "valueName", geocode_name(code))
        _sub(geocode, "value", code)
    return etree.tostring(alert, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def render_incident_cap(
    incident: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    *,
    public_url: str,
    sender: str,
    sender_name: str,
    category: str = "Safety",
    language: str = "zh-CN",
    areas: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Render the incident's current alert: the alert of its latest entry.

    ``entries`` may come in any order but must include the latest entry and, unless it is
    seq 1, the one just before it. Raises ``LookupError`` when there is no entry at all.
    """
    if not entries:
        raise LookupError(f"incident {incident.get('id')!r} has no entry to alert about")
    ordered = sorted(entries, key=lambda item: int(item["seq"]))
    latest = ordered[-1]
    previous = ordered[-2] if len(ordered) > 1 else None
    return render_cap(
        incident,
        latest,
        previous,
        public_url=public_url,
        sender=sender,
        sender_name=sender_name,
        category=category,
        language=language,
        areas=areas,
    )
