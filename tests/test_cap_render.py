"""Tests for channels.cap.render: CAP 1.2 alerts for timeline entries."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from entry_dicts import BASIS, MARKER, make_entry
from lxml import etree

from channels.cap.render import CAP_NS, render_cap, render_incident_cap

SCHEMAS = Path(__file__).parent / "schemas"
PUBLIC_URL = "https://yjj.example.gov.cn"
SENDER = "yjj.laoshan.example.gov.cn"
SENDER_NAME = "青岛市崂山区应急管理局"


@pytest.fixture(scope="module")
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMAS / "CAP-v1.2.xsd"))


def make_incident(**overrides: Any) -> dict[str, Any]:
    incident: dict[str, Any] = {
        "id": "szk",
        "code": "SZK",
        "title": "崂山区沙子口街道山洪",
        "summary": "",
        "severity": "severe",
        "area": "青岛市崂山区沙子口街道",
        "status": "active",
        "started_at": "2026-11-26T05:40:00Z",
        "created_at": "2026-11-26T05:50:00Z",
        "update_interval_minutes": 60,
        "head": {"seq": 3, "hash": "sha256:" + "0" * 64},
    }
    incident.update(overrides)
    return incident


def render(entry: dict[str, Any], previous: dict[str, Any] | None, **kwargs: Any) -> bytes:
    kwargs.setdefault("incident", make_incident())
    return render_cap(
        kwargs.pop("incident"),
        entry,
        previous,
        public_url=PUBLIC_URL,
        sender=SENDER,
        sender_name=SENDER_NAME,
        **kwargs,
    )


def field(alert: bytes, path: str) -> str | None:
    """Return the text at a slash-separated path of CAP elements below ``alert``."""
    steps = "/".join(f"cap:{step}" for step in path.split("/"))
    return etree.fromstring(alert).findtext(steps, namespaces={"cap": CAP_NS})


def assert_valid(schema: xmlschema.XMLSchema, alert: bytes) -> None:
    schema.validate(io.BytesIO(alert))


def test_first_entry_is_a_valid_alert(cap_schema: xmlschema.XMLSchema) -> None:
    """The first entry becomes a schema-valid Alert with no references."""
    alert = render(make_entry(1), None)
    assert_valid(cap_schema, alert)
    assert field(alert, "msgType") == "Alert"
    assert field(alert, "references") is None
    assert field(alert, "identifier") == f"{SENDER}.szk.1"
    assert field(alert, "sender") == SENDER
    assert field(alert, "sent") == "2026-11-26T06:01:05+00:00"
    assert field(alert, "status") == "Actual"
    assert field(alert, "scope") == "Public"


def test_info_block_describes_the_entry(cap_schema: xmlschema.XMLSchema) -> None:
    """The info block carries language, category, event, urgency, text, link and area."""
    alert = render(make_entry(1, "沙子口街道全面转移 & 安置"), None)
    assert_valid(cap_schema, alert)
    expected = {
        "info/language": "zh-CN",
        "info/category": "Safety",
        "info/event": "崂山区沙子口街道山洪",
        "info/urgency": "Immediate",
        "info/severity": "Severe",
        "info/certainty": "Observed",
        "info/senderName": SENDER_NAME,
        "info/headline": "崂山区沙子口街道山洪 · 更新 #1",
        "info/description": "沙子口街道全面转移 & 安置",
        "info/web": f"{PUBLIC_URL}/incidents/szk/entries/1",
        "info/area/areaDesc": "青岛市崂山区沙子口街道",
    }
    assert {path: field(alert, path) for path in expected} == expected


@pytest.mark.parametrize(
    ("severity", "urgency", "cap_severity"),
    [
        ("extreme", "Immediate", "Extreme"),
        ("severe", "Immediate", "Severe"),
        ("moderate", "Expected", "Moderate"),
        ("minor", "Future", "Minor"),
    ],
)
def test_severity_sets_urgency_and_severity(severity: str, urgency: str, cap_severity: str) -> None:
    """Each incident severity maps to its CAP urgency and severity."""
    alert = render(make_entry(1), None, incident=make_incident(severity=severity))
    assert (field(alert, "info/urgency"), field(alert, "info/severity")) == (urgency, cap_severity)


def test_later_entry_is_an_update_referencing_the_previous(
    cap_schema: xmlschema.XMLSchema,
) -> None:
    """A later entry is an Update whose references name the previous alert."""
    alert = render(make_entry(2), make_entry(1))
    assert_valid(cap_schema, alert)
    assert field(alert, "msgType") == "Update"
    assert field(alert, "references") == f"{SENDER},{SENDER}.szk.1,2026-11-26T06:01:05+00:00"


def test_resolving_status_entry_is_a_cancel(cap_schema: xmlschema.XMLSchema) -> None:
    """A status entry that resolves the incident is a Cancel referencing the previous alert."""
    entry = make_entry(3, "险情解除，撤离群众返回。", kind="status", status="resolved")
    alert = render(entry, make_entry(2))
    assert_valid(cap_schema, alert)
    assert field(alert, "msgType") == "Cancel"
    assert field(alert, "references") == f"{SENDER},{SENDER}.szk.2,2026-11-26T06:02:05+00:00"
    assert field(alert, "info/headline") == "崂山区沙子口街道山洪 · 状态 #3（已结束）"


def test_reactivating_status_entry_is_an_update() -> None:
    """A status entry that keeps the incident active is a plain Update."""
    alert = render(make_entry(3, kind="status", status="active"), make_entry(2))
    assert field(alert, "msgType") == "Update"


def test_parameters_carry_the_figures(cap_schema: xmlschema.XMLSchema) -> None:
    """Each figure becomes a parameter named by its key with its number as value."""
    figures = {"deaths": 0, "injured": 12, "evacuated": 3400, "x-vehicles": 7}
    alert = render(make_entry(2, figures=figures), make_entry(1))
    assert_valid(cap_schema, alert)
    root = etree.fromstring(alert)
    parameters = {
        parameter.findtext("cap:valueName", namespaces={"cap": CAP_NS}): parameter.findtext(
            "cap:value", namespaces={"cap": CAP_NS}
        )
        for parameter in root.iterfind("cap:info/cap:parameter", namespaces={"cap": CAP_NS})
    }
    assert parameters == {key: str(value) for key, value in figures.items()}


def test_redacted_entry_alert_carries_only_the_notice(cap_schema: xmlschema.XMLSchema) -> None:
    """A redacted entry's alert states the basis and holds none of the withheld text."""
    notice = f"本条信息已依据{BASIS}删除。"
    entry = make_entry(
        2,
        body=MARKER,  # a careless caller left the text in: it must still not leak
        html=f"<p>{html.escape(notice)}</p>",
        salt=None,
        redacted=True,
        figures={"deaths": 1},
    )
    alert = render(entry, make_entry(1))
    assert_valid(cap_schema, alert)
    text = alert.decode("utf-8")
    assert "WITHHELD" not in text and "13800138000" not in text
    assert field(alert, "info/description") == notice
    assert field(alert, "info/parameter/valueName") is None
    assert field(alert, "identifier") == f"{SENDER}.szk.2"


def test_incident_alert_is_the_latest_entrys(cap_schema: xmlschema.XMLSchema) -> None:
    """The incident's current alert is the alert of its latest entry, in any input order."""
    entries = [make_entry(2), make_entry(4, kind="status", status="resolved"), make_entry(3)]
    alert = render_incident_cap(
        make_incident(),
        entries,
        public_url=PUBLIC_URL,
        sender=SENDER,
        sender_name=SENDER_NAME,
        category="met",
    )
    assert_valid(cap_schema, alert)
    assert field(alert, "identifier") == f"{SENDER}.szk.4"
    assert field(alert, "msgType") == "Cancel"
    assert field(alert, "references") == f"{SENDER},{SENDER}.szk.3,2026-11-26T06:03:05+00:00"
    assert field(alert, "info/category") == "Met"


def test_incident_without_entries_has_no_alert() -> None:
    """An incident with no entries raises LookupError, for the caller to answer 404."""
    with pytest.raises(LookupError):
        render_incident_cap(
            make_incident(), [], public_url=PUBLIC_URL, sender=SENDER, sender_name=SENDER_NAME
        )


def test_event_time_becomes_onset_and_area_falls_back_to_title(
    cap_schema: xmlschema.XMLSchema,
) -> None:
    """event_time is the onset; an incident without an area is described by its title."""
    entry = make_entry(1, event_time="2026-11-26T13:20:00+08:00")
    alert = render(entry, None, incident=make_incident(area=None))
    assert_valid(cap_schema, alert)
    assert field(alert, "info/onset") == "2026-11-26T05:20:00+00:00"
    assert field(alert, "info/area/areaDesc") == "崂山区沙子口街道山洪"


def test_xml_illegal_characters_are_stripped(cap_schema: xmlschema.XMLSchema) -> None:
    """Control characters vanish and ``&`` / ``]]>`` survive a strict parser."""
    nasty = "A\x00\x01\ufffe\ud800 & B ]]> C"
    entry = make_entry(1, html=f"<p>{html.escape(nasty)}</p>")
    alert = render(entry, None, incident=make_incident(title=nasty, area=nasty))
    assert_valid(cap_schema, alert)
    etree.fromstring(alert, etree.XMLParser(recover=False, resolve_entities=False))
    assert field(alert, "info/description") == "A & B ]]> C"
    assert field(alert, "info/event") == "A & B ]]> C"


@pytest.mark.parametrize("sender", ["bad sender", "a,b", "a<b", "a&b", ""])
def test_sender_cap_forbids_is_refused(sender: str) -> None:
    """A sender with a space, comma, ``<`` or ``&`` is refused rather than emitted."""
    with pytest.raises(ValueError):
        render_cap(
            make_incident(),
            make_entry(1),
            None,
            public_url=PUBLIC_URL,
            sender=sender,
            sender_name=SENDER_NAME,
        )


def test_unknown_category_is_refused() -> None:
    """A category outside CAP's list is refused."""
    with pytest.raises(ValueError):
        render(make_entry(1), None, category="Flood")


@pytest.mark.parametrize(
    ("seq", "previous_seq"),
    [(2, None), (1, 1), (3, 1)],
)
def test_broken_chain_is_refused(seq: int, previous_seq: int | None) -> None:
    """``previous`` must be exactly the entry before, and absent only for seq 1."""
    previous = None if previous_seq is None else make_entry(previous_seq)
    with pytest.raises(ValueError):
        render(make_entry(seq), previous)
