"""Word the SMS replies to residents' commands (zh-CN or English), and limit how often.

Each reply carries the sender signature (``【…】``, required on Chinese
commercial SMS) and stays within two UCS-2 segments with a 20-character
title; the incident's title is shortened like entry SMS titles are.
"""

from __future__ import annotations

import time
from typing import Any

from broadcaster.settings import Settings

from .message import short_title

#: At most this many messages per number per window get an answer (or subscribe).
RATE_COUNT, RATE_WINDOW = 5, 600.0

REPLIES = {
    "zh-CN": {
        "subscribed": "已订阅「{title}」（代码{code}）短信通报，有新通报即发送。回TD退订。",
        "unsubscribed": "已退订「{title}」（代码{code}）短信通报。",
        "unsubscribed_all": "已退订全部短信通报，不会再收到消息。",
        "unknown_code": "未找到代码为{code}的事件，请核对后回复“订阅 代码”。",
        "ended": "「{title}」已结束，不再接受订阅。",
        "full": "「{title}」短信订阅人数已满，请关注官方网站发布。",
        "help": "订阅事件通报请回复“订阅 代码”，如“订阅 {example}”；退订请回复TD。",
    },
    "en": {
        "subscribed": "Subscribed to {title} ({code}) updates by SMS. Reply TD to stop.",
        "unsubscribed": "Unsubscribed from {title} ({code}) updates.",
        "unsubscribed_all": "Unsubscribed from all SMS updates.",
        "unknown_code": "No incident has the code {code}. Reply SUB followed by the code.",
        "ended": "{title} has ended; subscriptions are closed.",
        "full": "{title} has too many SMS subscribers; please follow the official website.",
        "help": "To subscribe, reply SUB and the incident code, e.g. SUB {example}. TD to stop.",
    },
}


def reply_text(settings: Settings, key: str, values: dict[str, Any]) -> str:
    """Return the signed reply ``key`` with ``values`` filled in."""
    texts = REPLIES.get(settings.lang, REPLIES["zh-CN"])
    if "title" in values:
        values = {**values, "title": short_title(str(values["title"]))}
    signature = settings.sms_signature.strip("【】")
    return f"【{signature}】" + texts[key].format(**values)


class RecentSenders:
    """Count each number's recent messages in memory (kept off disk: numbers are personal)."""

    def __init__(self) -> None:
        self._seen: dict[str, list[float]] = {}

    def allow(self, number: str) -> bool:
        moment = time.monotonic()
        if len(self._seen) > 50_000:
            self._seen = {k: v for k, v in self._seen.items() if v[-1] > moment - RATE_WINDOW}
        recent = [t for t in self._seen.get(number, []) if t > moment - RATE_WINDOW]
        recent.append(moment)
        self._seen[number] = recent
        return len(recent) <= RATE_COUNT
