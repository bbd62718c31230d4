"""Translate the pages' strings and format their dates and numbers (zh-CN, en).

Dates are built from CLDR patterns through Babel (``y年M月d日 HH:mm``), never by
concatenation, and always shown in Beijing time: the service is for mainland
China, whose single time zone has no daylight saving, so a fixed UTC+8 offset
is exact and needs no tz database. Numbers are exact integers, comma-grouped
(GB/T 15835 accepts "12,345"), never rounded to 万 or 亿.

Only UI strings live here; officials' text is never rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from babel.dates import format_datetime
from babel.numbers import format_decimal

from broadcaster.clock import parse_ts

LANGS = ("zh-CN", "en")
BEIJING = timezone(timedelta(hours=8), "CST")
_LOCALE = {"zh-CN": "zh_CN", "en": "en_GB"}
_PATTERNS = {
    "zh-CN": {
        "full": "y年M月d日 HH:mm",
        "day": "y年M月d日",
        "time": "HH:mm",
        "weekday": "y年M月d日 EEEE HH:mm",
    },
    "en": {
        "full": "d MMMM y, HH:mm",
        "day": "d MMMM y",
        "time": "HH:mm",
        "weekday": "EEEE d MMMM y, HH:mm",
    },
}

SEVERITY_LEVEL = {"extreme": 1, "severe": 2, "moderate": 3, "minor": 4}

#: key -> (zh-CN, en). ``{name}`` placeholders are filled by ``t``.
STRINGS: dict[str, tuple[str, str]] = {
    "official": ("官方发布", "Official release"),
    "how_to_check": ("如何核实", "How to check"),
    "official_domain": (
        "政府网站使用 .gov.cn 域名，并通过 HTTPS 加密连接。",
        "Government sites use a .gov.cn domain over an encrypted HTTPS connection.",
    ),
    "official_chain": (
        "每条动态都以哈希链相连并由数字签名确认，任何改动都能被发现。",
        "Every update is hash-chained and signed, so any alteration can be detected.",
    ),
    "verify_link": ("核验本页内容", "Verify this page"),
    "site_alert": ("紧急提示", "Emergency alert"),
    "sev.extreme": ("一级 · 红色预警", "Level I · Red warning"),
    "sev.severe": ("二级 · 橙色预警", "Level II · Orange warning"),
    "sev.moderate": ("三级 · 黄色预警", "Level III · Yellow warning"),
    "sev.minor": ("四级 · 蓝色预警", "Level IV · Blue warning"),
    "status.active": ("进行中", "Active"),
    "status.resolved": ("已结束", "Resolved"),
    "kind.update": ("更新", "Update"),
    "kind.correction": ("更正", "Correction"),
    "kind.status": ("状态", "Status"),
    "kind.redaction": ("删除", "Redaction"),
    "kind.answer": ("答复", "Answer"),
    "fig.deaths": ("死亡", "Deaths"),
    "fig.injured": ("受伤", "Injured"),
    "fig.missing": ("失联", "Missing"),
    "fig.evacuated": ("转移", "Evacuated"),
    "fig.sheltered": ("安置", "Sheltered"),
    "fig.rescued": ("获救", "Rescued"),
    "fig.affected": ("受灾", "Affected"),
    "area": ("地点", "Area"),
    "sms_code": ("短信代码", "SMS code"),
    "started": ("开始时间", "Started"),
    "beijing_time": ("北京时间", "Beijing time, UTC+8"),
    "last_update": ("最后更新", "Last updated"),
    "no_update_yet": ("尚无动态", "No updates yet"),
    "next_due": ("下次更新预计", "Next update due"),
    "overdue": ("已超过承诺更新时间 {minutes} 分钟", "The promised update is {minutes} min late"),
    "overdue_short": ("已逾期", "Overdue"),
    "refresh": ("刷新", "Refresh"),
    "now_do": ("现在应做", "What to do now"),
    "key_figures": ("关键数字", "Key figures"),
    "as_of": ("截至 {time}", "as of {time}"),
    "history": ("历史", "History"),
    "corrected": ("已更正", "Corrected"),
    "value": ("数值", "Value"),
    "time": ("时间", "Time"),
    "summary": ("概况", "Summary"),
    "key_events": ("关键事件", "Key events"),
    "timeline": ("全部动态", "All updates"),
    "newest_first": ("最新在前", "Newest first"),
    "oldest_first": ("最早在前", "Oldest first"),
    "key_only": ("只看关键事件", "Key events only"),
    "all_entries": ("显示全部", "Show all"),
    "pause": ("暂停实时更新", "Pause live updates"),
    "resume": ("恢复实时更新", "Resume live updates"),
    "new_entries": ("{n} 条新动态", "{n} new updates"),
    "older": ("更早的动态", "Older updates"),
    "newer": ("较新的动态", "Newer updates"),
    "latest": ("回到最新", "Back to latest"),
    "approved_by": ("审核：{name}", "Approved by {name}"),
    "corrected_at": ("已于 {time} 更正", "Corrected at {time}"),
    "see_correction": ("查看更正", "See the correction"),
    "corrects": ("更正 #{seq}", "Corrects #{seq}"),
    "redacts": ("删除 #{seq} 的内容", "Withholds #{seq}"),
    "copy_link": ("复制链接", "Copy link"),
    "empty_timeline": ("暂无动态。", "No updates yet."),
    "subscribe": ("订阅与核验", "Subscribe and verify"),
    "sms_line": ("发送「订阅 {code}」至 {sender}", "Text “SUB {code}” to {sender}"),
    "sms_leave": ("退订请回复 TD", "Reply TD to stop"),
    "feeds": ("订阅源", "Feeds"),
    "cap": ("CAP 预警消息", "CAP alert"),
    "verify": ("核验完整性", "Verify integrity"),
    "verify_cli": ("或在命令行运行：", "Or run:"),
    "first_published": ("首次发布", "First published"),
    "language": ("English", "中文"),
    "index_title": ("突发事件信息", "Emergency information"),
    "active_incidents": ("正在发布的事件", "Active incidents"),
    "recent_resolved": ("近期已结束", "Recently resolved"),
    "none_active": ("目前没有正在发布的事件。", "No active incidents."),
    "entries_count": ("{n} 条动态", "{n} updates"),
    "resolved_at": ("结束于 {time}", "Resolved {time}"),
    "search": ("搜索", "Search"),
    "search_label": ("搜索全部通报", "Search all bulletins"),
    "all_feeds": ("全部事件订阅源", "Feeds for all incidents"),
    "areas": ("涉及地区", "Areas"),
    "area_title": ("{name}突发事件信息", "Emergency information: {name}"),
    "area_code": ("区划代码", "Area code"),
    "area_within": ("隶属", "Part of"),
    "area_incidents": ("本地区事件", "Incidents in this area"),
    "area_none": ("本地区目前没有事件。", "No incidents in this area."),
    "area_latest": ("本地区最新动态", "Latest updates in this area"),
    "area_feeds": ("本地区订阅源", "Feeds for this area"),
    "area_sms": (
        "短信预警：发送「订阅 {name}」至 {sender}（严重及以上级别；加「全部」接收所有级别）",
        "SMS alerts: text “SUB {code}” to {sender} (severe and above; add “ALL” for every level)",
    ),
    "all_areas": ("全部地区", "All areas"),
    "entry_type": ("类型", "Type"),
    "entry_seq": ("序号", "Number"),
    "entry_time": ("发布时间", "Published"),
    "entry_dept": ("发布机关", "Issued by"),
    "entry_reviewer": ("审核人", "Approved by"),
    "entry_incident": ("所属事件", "Incident"),
    "event_time": ("事件时间", "Event time"),
    "in_timeline": ("在时间线中查看", "See in the timeline"),
    "prev": ("上一条", "Previous"),
    "next": ("下一条", "Next"),
    "verification": ("核验信息", "Verification"),
    "content_hash": ("内容哈希", "Content hash"),
    "chain_hash": ("链哈希", "Chain hash"),
    "prev_hash": ("前一条哈希", "Previous hash"),
    "verify_in_browser": ("在浏览器中核验", "Verify in the browser"),
    "not_found": ("未找到该页面", "Page not found"),
    "bad_request": ("请求有误", "Bad request"),
    "home": ("返回首页", "Home"),
    "filing": ("备案信息", "Registration"),
    "live_page": ("实时页面", "Live page"),
    "console": ("新闻发布控制台", "Press office console"),
    "read_more": ("展开全文", "Read more"),
    "reconnecting": (
        "连接中断，正在重连（内容截至 {time}）",
        "Connection lost, reconnecting (content as of {time})",
    ),
    "copied": ("已复制链接", "Link copied"),
    "verify_checking": ("正在核验…", "Checking…"),
    "verify_ok": ("完整：{n} 条，签名有效", "Intact: {n} entries, signature valid"),
    "verify_bad": ("发现篡改：第 {seq} 条 {what}", "Tampering found: entry {seq}: {what}"),
    "verify_sig": ("发现篡改：签名无效", "Tampering found: the signature is not valid"),
    "verify_tampered": ("发现篡改：{what}", "Tampering found: {what}"),
    "verify_error": ("无法核验：{why}", "Could not check: {why}"),
    "pinned": ("置顶", "Pinned"),
    "pages": ("翻页", "More updates"),
    "ask_err.too_short": ("问题至少需要 4 个字。", "A question needs at least 4 characters."),
    "ask_err.too_long": ("问题最多 500 个字。", "A question has at most 500 characters."),
    "ask_err.disclosure_review": (
        "问题中似乎有个人信息（手机号、身份证号等），请删去后再提交。",
        "The question seems to hold personal information (a phone or ID number):"
        " remove it and send again.",
    ),
    "ask_err.rate_limited": (
        "提交过于频繁，请稍后再试。",
        "Too many questions from here: try again later.",
    ),
    "ask_err.incident_resolved": (
        "本事件已结束，不再接受提问。",
        "This incident is over and takes no more questions.",
    ),
    "ask_err.other": (
        "问题未能提交，请修改后重试。",
        "The question could not be sent: change it and try again.",
    ),
    "asked_at": ("提问于 {time}", "Asked {time}"),
    "level": ("级别", "Level"),
    "status": ("状态", "Status"),
    "advice": ("现在应做", "What to do now"),
    "interval": ("承诺更新间隔", "Update interval"),
    "minutes": ("{n} 分钟", "{n} min"),
    "summary_changed": ("已更新（见页首）", "updated (see the top of the page)"),
    "resolved_note": (
        "本事件已于 {time} 结束，此前发布的措施不再适用。",
        "This incident ended at {time}; earlier instructions no longer apply.",
    ),
    "questions": ("公众提问", "Questions from the public"),
    "answered_questions": ("已答复的问题", "Answered questions"),
    "no_answers": ("暂无已答复的问题。", "No answered questions yet."),
    "see_answer": ("查看答复", "See the answer"),
    "ask": ("向发布机关提问", "Ask the issuing office"),
    "ask_label": ("您的问题", "Your question"),
    "ask_hint": (
        "请勿填写姓名、电话、身份证号等个人信息。问题经答复后在本页公开。",
        "Leave out names, phone numbers and ID numbers. Questions appear here once answered.",
    ),
    "ask_send": ("提交问题", "Send the question"),
    "asked": (
        "已收到您的问题，答复后将显示在本页。",
        "Question received: it will appear here once answered.",
    ),
    "ask_closed": (
        "本事件已结束，不再接受提问。",
        "This incident is over and takes no more questions.",
    ),
    "ask_problem": ("问题未能提交", "The question was not sent"),
    "corrected_mark": ("【已更正】", "[Corrected] "),
    "corrected_desc": ("本条已更正，见第 {seqs} 条。", "Corrected: see update {seqs}."),
    "withheld": ("内容已删除", "Withheld"),
    "not_found_help": (
        "链接可能不完整：短信中的链接有时会被截断。可以从下面正在发布的事件进入，或搜索通报。",
        "The link may be incomplete: text messages sometimes cut links."
        " Start from an active incident below, or search the bulletins.",
    ),
    "what_happened": ("请求的地址", "Address requested"),
    "state_change": ("事件状态变更", "Incident status change"),
    "noscript": (
        "实时更新需要启用 JavaScript；本页内容已是最新，可点击“刷新”获取新动态。",
        "Live updates need JavaScript; this page is complete, use “Refresh” for news.",
    ),
}


#: What a status entry changed, in sentences (SMS, CAP, feeds, pages).
CHANGE_TEXT = {
    "severity": ("预警级别调整为{value}。", "Warning level changed to {value}."),
    "resolved": ("事件已结束。", "The incident is over."),
    "active": ("事件恢复为进行中。", "The incident is active again."),
    "advice": ("{value}", "{value}"),
    "area": ("影响范围：{value}。", "Area: {value}."),
    "summary": ("概况已更新。", "The summary was updated."),
}


def change_text(record: Mapping[str, Any], lang: str) -> str:
    """Return the sentences saying what a status entry changed, for people (not machines)."""
    pick = 1 if lang == "en" else 0
    parts = []
    if record.get("severity"):
        label = severity_label(record["severity"], lang)
        parts.append(CHANGE_TEXT["severity"][pick].format(value=label))
    if record.get("status"):
        parts.append(CHANGE_TEXT[record["status"]][pick])
    for name in ("advice", "area"):
        if record.get(name):
            parts.append(CHANGE_TEXT[name][pick].format(value=record[name]))
    if record.get("summary"):
        parts.append(CHANGE_TEXT["summary"][pick])
    return " ".join(parts) if lang == "en" else "".join(parts)


def pick_lang(requested: str | None, default: str) -> str:
    """Return ``requested`` if it is a supported language, else ``default``."""
    return requested if requested in LANGS else default


def t(lang: str, key: str, **values: object) -> str:
    """Return the UI string ``key`` in ``lang`` with ``{name}`` placeholders filled."""
    zh, en = STRINGS[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def beijing(ts: str | datetime) -> datetime:
    """Return a timestamp (RFC 3339 text or aware datetime) in Beijing time."""
    moment = parse_ts(ts) if isinstance(ts, str) else ts
    return moment.astimezone(BEIJING)


def iso(ts: str | datetime) -> str:
    """Return ISO 8601 with ``+08:00``, for ``<time datetime>`` (seconds precision)."""
    return beijing(ts).isoformat(timespec="seconds")


def fmt(ts: str | datetime, lang: str, style: str = "full") -> str:
    """Format ``ts`` with one of the CLDR patterns: full, day, time or weekday."""
    return format_datetime(
        beijing(ts), _PATTERNS[lang][style], tzinfo=BEIJING, locale=_LOCALE[lang]
    )


def fmt_near(ts: str | datetime, lang: str, now: datetime | None = None) -> str:
    """Format ``ts`` as just the time on the same Beijing day as ``now``, else in full."""
    moment = beijing(ts)
    today = beijing(now or datetime.now(UTC)).date()
    return fmt(moment, lang, "time" if moment.date() == today else "full")


def number(value: int, lang: str) -> str:
    """Return an exact integer, comma-grouped (``12,345``)."""
    return format_decimal(value, locale=_LOCALE[lang], group_separator=True)


def severity_label(severity: str, lang: str) -> str:
    return t(lang, "sev." + severity) if severity in SEVERITY_LEVEL else severity


def figure_label(key: str, lang: str, custom: Mapping[str, tuple[str, str]] | None = None) -> str:
    """Return a figure's name: the vocabulary's, the site's label for a custom key, or the key.

    A custom key without a label shows as words ("x-power-outage" as "power outage"),
    which is English: ``figure_lang`` says so, for the ``lang`` attribute.
    """
    if "fig." + key in STRINGS:
        return t(lang, "fig." + key)
    if custom and key in custom:
        zh, en = custom[key]
        return en if lang == "en" else zh
    return key.removeprefix("x-").replace("-", " ").replace("_", " ")


def figure_lang(
    key: str, lang: str, custom: Mapping[str, tuple[str, str]] | None = None
) -> str | None:
    """Return the language of a figure's label when it differs from the page's, else None."""
    known = "fig." + key in STRINGS or key in (custom or {})
    return None if known or lang == "en" else "en"
