"""Word the SMS replies to residents' commands (zh-CN or English), and limit how often.

Each reply carries the sender signature (``【…】``, required on Chinese
commercial SMS) and stays within two UCS-2 segments with a 20-character
title; the incident's title is shortened like entry SMS titles are.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict, deque
from collections.abc import Callable
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
        "area_subscribed": "已订阅「{name}」（{code}）{level}突发事件预警短信，新事件发布即发送。"
        "回TD退订，回“退订 {code}”只退此地区。",
        "area_unsubscribed": "已退订「{name}」（{code}）地区预警短信。",
        "area_ambiguous": "有多个地区名为“{target}”：{choices}。请回复“订阅 代码”。",
        "area_suggest": "未找到“{target}”。您要订阅的是否为{choices}？请回复“订阅 代码”。",
        "unknown_area": "未找到地区“{target}”。请回复“订阅 地区名称或代码”，如“订阅 {example}”。",
        "area_full": "「{name}」短信订阅人数已满，请关注官方网站发布。",
    },
    "en": {
        "subscribed": "Subscribed to {title} ({code}) updates by SMS. Reply TD to stop.",
        "unsubscribed": "Unsubscribed from {title} ({code}) updates.",
        "unsubscribed_all": "Unsubscribed from all SMS updates.",
        "unknown_code": "No incident has the code {code}. Reply SUB followed by the code.",
        "ended": "{title} has ended; subscriptions are closed.",
        "full": "{title} has too many SMS subscribers; please follow the official website.",
        "help": "To subscribe, reply SUB and the incident code, e.g. SUB {example}. TD to stop.",
        "area_subscribed": "Subscribed to {level} alerts for {name} ({code}) by SMS."
        " Reply TD to stop, or TD {code} for this area only.",
        "area_unsubscribed": "Unsubscribed from alerts for {name} ({code}).",
        "area_ambiguous": "Several areas are called {target}: {choices}. Reply SUB and the code.",
        "area_suggest": "No area {target}. Did you mean {choices}? Reply SUB and the code.",
        "unknown_area": "No area {target}. Reply SUB and an area name or code, e.g. SUB {example}.",
        "area_full": "{name} has too many SMS subscribers; please follow the official website.",
    },
}


#: How an area subscription's level reads in its confirmation.
LEVELS = {
    "zh-CN": {"severe": "严重及以上级别", "every": "全部级别"},
    "en": {"severe": "severe and extreme", "every": "all"},
}


def level_text(settings: Settings, every: bool) -> str:
    """Return the words for an area subscription's level."""
    return LEVELS.get(settings.lang, LEVELS["zh-CN"])["every" if every else "severe"]


def reply_text(settings: Settings, key: str, values: dict[str, Any]) -> str:
    """Return the signed reply ``key`` with ``values`` filled in."""
    texts = REPLIES.get(settings.lang, REPLIES["zh-CN"])
    if "title" in values:
        values = {**values, "title": short_title(str(values["title"]))}
    signature = settings.sms_signature.strip("【】")
    return f"【{signature}】" + texts[key].format(**values)


def sender_key(settings: Settings, number: str) -> str:
    """Return the key a number's reply limit is kept under: a keyed hash, never the number.

    The key may sit in Redis, shared by the nodes (they share the signing key).
    """
    secret = (settings.signing_key or "broadcaster-sms").encode()
    return hmac.new(secret, number.encode(), hashlib.sha256).hexdigest()[:32]


class RecentSenders:
    """Count each number's recent messages in memory (a ``ratelimit.Limiter``).

    ``count(key)`` answers 0 while the number has sent at most ``RATE_COUNT``
    messages within ``RATE_WINDOW`` seconds; on several nodes its Redis twin
    (``ratelimit.shared_window``, ``limit`` = ``RATE_COUNT + 1``) keeps one
    count for all of them.
    """

    def __init__(self, max_keys: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = RATE_COUNT + 1  # the message that reaches ``limit`` is the first refused
        self.window = RATE_WINDOW
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    async def check(self, key: str) -> float:
        times = self._recent(key)
        return times[0] + self.window - self.clock() if len(times) >= self.limit else 0.0

    async def count(self, key: str) -> float:
        times = self._recent(key)
        times.append(self.clock())
        self._seen[key] = times
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return await self.check(key)

    def _recent(self, key: str) -> deque[float]:
        times = self._seen.get(key) or deque(maxlen=self.limit)
        while times and times[0] <= self.clock() - self.window:
            times.popleft()
        return times
