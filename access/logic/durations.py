"""Go duration strings, as Cloudflare's API uses them for session durations (`"24h"`, `"2h45m"`, `"300ms"`)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")

MONTH = timedelta(hours=730)  # Cloudflare's "1 month" session option
MIN_GLOBAL_SESSION = timedelta(minutes=15)


def parse_go_duration(text: object) -> timedelta:
    """Parse a non-negative Go duration ("0", "24h", "1h30m", "1.5h"); ValueError with a readable reason."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("A duration is a string such as “24h”, “30m” or “2h45m”.")
    value = text.strip()
    if value == "0":
        return timedelta(0)
    if value.startswith("-"):
        raise ValueError(f"“{value}”: a duration cannot be negative.")
    value = value.lstrip("+")
    position, seconds = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(value) or position == 0:
        raise ValueError(f"“{text}” is not a duration: use a number and a unit (h, m, s, ms), e.g. “24h” or “2h45m”.")
    if seconds > 100 * 365 * 86400:
        raise ValueError(f"“{text}” is too long.")
    return timedelta(seconds=round(seconds, 6))


def format_go_duration(duration: timedelta) -> str:
    """The shortest Go spelling of whole seconds: 86400 s -> "24h", 9900 s -> "2h45m", 0 -> "0s"."""
    total = int(duration.total_seconds())
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{seconds}s" if seconds else "")


def session_duration(text: object, *, field: str, minimum: timedelta = timedelta(0)) -> timedelta:
    """A session duration within Cloudflare's range (minimum … 1 month); ValueError naming the field."""
    try:
        duration = parse_go_duration(text)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if duration < minimum:
        raise ValueError(f"{field}: at least {format_go_duration(minimum)}.")
    if duration > MONTH:
        raise ValueError(f"{field}: at most 1 month (730h).")
    return duration
