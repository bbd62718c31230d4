"""Build timeline entries as plain dicts, shaped as the contract serialises them.

Shared by the renderer tests (CAP, feeds), which need entries without a
database. The hashes are placeholders, not a valid chain: the renderers copy
them and never verify them.
"""

from __future__ import annotations

import html
from typing import Any

# Stands for the withheld text of a redacted entry: it must appear in no output.
MARKER = "WITHHELD-7f3a 张某某 13800138000"
BASIS = "《政府信息公开条例》第十五条"


def make_entry(seq: int, text: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Build an entry shaped as in the contract, posted seq minutes after 06:00Z."""
    body = f"第{seq}次通报：沙子口街道转移群众，道路抢通进行中。" if text is None else text
    entry: dict[str, Any] = {
        "incident": "szk",
        "seq": seq,
        "kind": "update",
        "posted_at": f"2026-11-26T06:{seq:02d}:05.123Z",
        "event_time": None,
        "author": {"name": "王五", "department": "崂山区应急管理局"},
        "body": body,
        "html": f"<p>{html.escape(body)}</p>",
        "corrects": None,
        "status": None,
        "sms": False,
        "figures": None,
        "approved_by": None,
        "salt": "ab" * 16,
        "content_hash": f"sha256:{seq:064x}",
        "prev_hash": f"sha256:{seq - 1:064x}",
        "hash": f"sha256:{seq + 100:064x}",
        "redacted": False,
        "redacts": None,
        "question": None,
        "update_interval_minutes": None,
    }
    entry.update(overrides)
    return entry
