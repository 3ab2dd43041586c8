"""Durations as operators type them: ``30m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.errors import BadInput

_DURATION = re.compile(r"^(?:([0-9]{1,6})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,7})m)?(?:([0-9]{1,8})s)?$")
# A pause's duration, exactly: parts d, h, m, s in that order (either case), each at most this many
# digits (999d, 9999h, 999999m, 99999999s), not all zero. One regular expression says it, so the
# OpenAPI document can give it as the pattern of "for" (a request that fits it is accepted).
PAUSE_PARTS = (("d", 3), ("h", 4), ("m", 6), ("s", 8))


def _pause_pattern() -> str:
    def nonzero(n: int) -> str:  # 1..n digits, not all zero
        return "(?:" + "|".join(f"0{{{k}}}[1-9][0-9]{{0,{n - 1 - k}}}" for k in range(n)) + ")"

    def unit(u: str) -> str:
        return f"[{u}{u.upper()}]"

    choices = []
    for first in range(len(PAUSE_PARTS)):  # the first part that is not zero
        parts = []
        for i, (u, n) in enumerate(PAUSE_PARTS):
            if i < first:
                parts.append(f"(?:0{{1,{n}}}{unit(u)})?")
            elif i == first:
                parts.append(f"{nonzero(n)}{unit(u)}")
            else:
                parts.append(f"(?:[0-9]{{1,{n}}}{unit(u)})?")
        choices.append("".join(parts))
    return "^(?:" + "|".join(choices) + ")$"


PAUSE_PATTERN = _pause_pattern()
_PAUSE = re.compile(PAUSE_PATTERN)


def _parse(text: str, examples: str, zero: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match:
        raise BadInput(f"{text!r} is not a duration (try {examples})")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise BadInput(zero)
    return value


def parse_duration(text: str) -> timedelta:
    """Parse ``1d2h30m15s`` (any of the parts, in that order: PAUSE_PATTERN) for a pause; raise
    BadInput otherwise."""
    if not _PAUSE.match(text):
        if text != text.strip():
            raise BadInput(f"{text[:40]!r} is not a duration (try 30m, 2h, 1d or 1h30m, without spaces)")
        value = _parse(text, "30m, 2h, 1d or 1h30m", "a pause must last longer than zero")  # says what is wrong
        raise BadInput(f"{text[:40]!r} is too long a pause: at most 999d, 9999h, 999999m or 99999999s in each part "
                       f"(it would last {value.days} days; leave the duration out to pause until resumed)")
    return _parse(text, "", "")


def parse_span(text: str) -> timedelta:
    """A positive length of time for a setting (``10m``, ``90d``, ``30s``): no upper bound."""
    return _parse(text, "30s, 10m, 2h or 90d", "must be longer than zero")


def looks_like_duration(text: str) -> bool:
    """Whether a word was meant as a duration (digits and unit letters), even a malformed one."""
    # "1.5h", "1h-", "2,5h", "1:30": meant as durations, never a reason (a pause with no end).
    return bool(re.fullmatch(r"\d[\dA-Za-z.,:_-]*", text.strip()))


def parse_pause_words(words: list[str]) -> tuple[timedelta | None, str | None]:
    """``pause [duration] [reason…]`` as typed in Slack or the CLI: a first word that looks like a
    duration must be one (``2x`` is an error, not a reason); the rest is the reason."""
    if words and looks_like_duration(words[0]):
        duration: timedelta | None = parse_duration(words[0])
        words = words[1:]
    else:
        duration = None
    reason = " ".join(words).strip() or None
    return duration, reason
