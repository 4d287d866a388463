"""Time helpers: always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix; fractional seconds trimmed of trailing zeros (as Go)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += ("." + f"{value.microsecond:06d}").rstrip("0")
    return text + "Z"


def rfc3339_millis(value: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, as Mender's activity API returns times."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (``Z`` or offset; up to nanoseconds, truncated to microseconds)."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("time has no timezone")
    try:  # valid RFC 3339 whose instant is outside years 1-9999 in UTC (0001-01-01T00:00:00+00:01)
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is outside years 1-9999 in UTC") from None
    return parsed
