"""``/foojob`` text → a command, or a clear complaint with the usage. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from bot.durations import parse_pause_words
from bot.errors import BadInput
from bot.schedules import parse_cron, parse_zone

Verb = Literal["run-now", "pause", "resume", "status", "history", "help", "schedule", "schedule-set",
               "schedule-reset", "next", "skip", "unskip"]
# Previewing a change is refused too: only someone who may Apply it should be shown the button.
MUTATING: frozenset[str] = frozenset({"run-now", "pause", "resume", "schedule-set", "schedule-reset", "skip",
                                      "unskip"})
MAX_HISTORY = 25
MAX_NEXT = 25
MAX_REASON = 500

USAGE = """*Usage:* `/foojob <verb>`
• `/foojob run-now` — run the job now (paused or not)
• `/foojob pause [duration] [reason…]` — pause the schedule, e.g. `/foojob pause 2h deploy`
    (durations: `30m`, `2h`, `1d`, `1h30m`; without one, until someone resumes)
• `/foojob resume` — resume the schedule
• `/foojob status` — paused or not, the schedule, the next and the last run
• `/foojob history [n]` — the last runs (10 unless you say, at most 25)
• `/foojob schedule` — the schedule in words, where it comes from, and its next 5 fire times
• `/foojob schedule set <5 or 6 fields> [zone]` — preview a new schedule, then *Apply* it,
    e.g. `/foojob schedule set 0 6 * * 1-5 Europe/London`
• `/foojob schedule reset` — back to the configured schedule (`FOOJOB_CRON`), with a preview
• `/foojob next [n]` — the next fire times (5 unless you say, at most 25)
• `/foojob skip` / `/foojob unskip` — skip the next fire (only that one), or take the skip back
• `/foojob help` — this"""

SCHEDULE_USAGE = """`/foojob schedule` · `/foojob schedule set <minute hour day month weekday> [zone]` \
(6 fields: seconds first) · `/foojob schedule reset`"""


@dataclass(frozen=True)
class Command:
    verb: Verb
    duration: timedelta | None = None
    reason: str | None = None
    limit: int = 10
    cron: str | None = None
    timezone: str | None = None


def parse(text: str) -> Command:
    """Read the text after ``/foojob``; raise BadInput saying what is wrong."""
    words = text.split()
    if not words:
        return Command("help")
    verb, rest = words[0].lower(), words[1:]
    if verb == "pause":
        duration, reason = parse_pause_words(rest)
        if reason is not None and len(reason) > MAX_REASON:
            raise BadInput(f"the reason is too long ({MAX_REASON} characters at most)")
        return Command("pause", duration=duration, reason=reason)
    if verb == "history":
        return Command("history", limit=_count(rest, "history", default=10, most=MAX_HISTORY, what="runs"))
    if verb == "schedule":
        return _schedule(rest)
    if verb == "next":
        return Command("next", limit=_count(rest, "next", default=5, most=MAX_NEXT, what="fire times"))
    if verb in ("run-now", "resume", "status", "help", "skip", "unskip"):
        if rest:
            raise BadInput(f"`{verb}` takes nothing after it")
        return Command(verb)  # type: ignore[arg-type]
    raise BadInput(f"I don't know `{truncate_word(words[0])}`")


def _count(rest: list[str], verb: str, *, default: int, most: int, what: str) -> int:
    """The optional number after ``history`` or ``next``."""
    if len(rest) > 1 or (rest and not (rest[0].isascii() and rest[0].isdigit() and len(rest[0]) < 4)):
        raise BadInput(f"`{verb}` takes at most one number: `/foojob {verb} {default * 2}`")
    count = int(rest[0]) if rest else default
    if not 1 <= count <= most:
        raise BadInput(f"`{verb}` shows 1 to {most} {what}")
    return count


def _schedule(words: list[str]) -> Command:
    if not words:
        return Command("schedule")
    action, rest = words[0].lower(), words[1:]
    if action == "reset":
        if rest:
            raise BadInput("`schedule reset` takes nothing after it")
        return Command("schedule-reset")
    if action != "set":
        raise BadInput(f"`schedule` takes `set <fields> [zone]` or `reset`, not `{truncate_word(words[0])}`")
    if not rest:
        raise BadInput("`schedule set` needs a crontab expression: `/foojob schedule set 0 6 * * *`")
    timezone = None
    if len(rest) > 1 and _looks_like_zone(rest[-1]):
        timezone, rest = rest[-1], rest[:-1]
    if timezone is not None:
        parse_zone(timezone)
    cron = " ".join(rest)
    parse_cron(cron)  # a bad field is named now, before anything is shown or changed
    return Command("schedule-set", cron=cron, timezone=timezone)


def _looks_like_zone(word: str) -> bool:
    # Crontab fields hold digits, * , - / and month or day names (JAN, MON), which are no zones;
    # a zone is a name such as UTC or Europe/London. A word that is neither is reported as a bad
    # zone when it has a "/" between letters, else as a bad cron field.
    if not any(c.isalpha() for c in word) or word.lower()[:3] in _CRON_NAMES and len(word) <= 7:
        return False
    if "/" in word and any(c.isalpha() for c in word.split("/", 1)[0]):
        return True
    try:
        parse_zone(word)
    except BadInput:
        return False
    return True


_CRON_NAMES = frozenset(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
                         "sun", "mon", "tue", "wed", "thu", "fri", "sat"])


def truncate_word(word: str) -> str:
    return word if len(word) <= 30 else word[:29] + "…"
