"""Format and parse the service's timestamps: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """Return ``moment`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    moment = moment.astimezone(UTC)
    # strftime's %Y does not zero-pad years before 1000 on glibc ("117-10-04").
    return (
        f"{moment.year:04d}"
        + moment.strftime("-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}Z"
    )


def now_ts() -> str:
    return format_ts(now())


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that names its offset (``Z`` or ``+08:00``)."""
    if not isinstance(text, str) or len(text) < 20 or "T" not in text.upper():
        raise ValueError("not an RFC 3339 timestamp")
    value = datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None:
        raise ValueError("an RFC 3339 timestamp must name its offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 falls before year 1 in UTC
        raise ValueError("the timestamp is out of range") from None
