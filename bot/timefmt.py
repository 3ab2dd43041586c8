"""Time formatting shared by every surface."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo


def rfc3339(value: datetime | None, tz: tzinfo) -> str | None:
    """RFC 3339 with an offset, in the configured zone; None stays None."""
    if value is None:
        return None
    return value.astimezone(tz).isoformat()


def human_duration(value: timedelta | None) -> str:
    """``3 ms``, ``1.2 s``, ``2 min 5 s``."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s"


def human_time(value: datetime | None, tz: tzinfo) -> str:
    """A time for people: ``Thu 26 Nov 2026 21:58:06 JST`` (whole seconds, the zone's abbreviation)."""
    if value is None:
        return "—"
    local = value.astimezone(tz)
    return local.strftime("%a %d %b %Y %H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def clock_time(value: datetime, tz: tzinfo) -> str:
    """A time of today for people: ``21:58:06 JST`` (a run's card: its date is the message's)."""
    local = value.astimezone(tz)
    return local.strftime("%H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def span(value: timedelta) -> str:
    """A length of time as it is configured: ``10m``, ``1h30m``, ``2s``, ``1d``."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return f"{value.total_seconds():g}s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out
