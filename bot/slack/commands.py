"""``/foojob`` text → a command, or a clear complaint with the usage. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
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

USAGE = """*Usage:* `/foojob <verb> [job] …` (the job right after the verb; with one job, leave it out)
• `/foojob run-now [job]` — run the job now (paused or not)
• `/foojob pause [job] [duration] [reason…]` — pause its schedule, e.g. `/foojob pause nightly-rollup 2h deploy`
    (durations: `30m`, `2h`, `1d`, `1h30m`; without one, until someone resumes)
• `/foojob resume [job]` — resume its schedule
• `/foojob status [job]` — paused or not, the schedule, the next and the last run (every job without one)
• `/foojob history [job] [n]` — the last runs (10 unless you say, at most 25)
• `/foojob schedule [job]` — the schedule in words, where it comes from, and its next 5 fire times
• `/foojob schedule [job] set <5 or 6 fields> [zone]` — preview a new schedule, then *Apply* it,
    e.g. `/foojob schedule nightly-rollup set 0 6 * * 1-5 Europe/London`
• `/foojob schedule [job] reset` — back to the configured schedule, with a preview
• `/foojob next [job] [n]` — the next fire times (5 unless you say, at most 25)
• `/foojob skip [job]` / `/foojob unskip [job]` — skip the next fire (only that one), or take the skip back
• `/foojob help` — this"""

SCHEDULE_USAGE = """`/foojob schedule [job]` · `/foojob schedule [job] set <minute hour day month weekday> [zone]` \
(6 fields: seconds first) · `/foojob schedule [job] reset`"""


@dataclass(frozen=True)
class Command:
    verb: Verb
    job: str | None = None  # named after the verb; None: not named (the only job, or every job)
    duration: timedelta | None = None
    reason: str | None = None
    limit: int = 10
    cron: str | None = None
    timezone: str | None = None


def parse(text: str, jobs: Collection[str] = ()) -> Command:
    """Read the text after ``/foojob``; raise BadInput saying what is wrong. A verb's first word
    is a job when it names one of ``jobs``."""
    words = text.split()
    if not words:
        return Command("help")
    verb, rest = words[0].lower(), words[1:]
    job = None
    if verb != "help" and rest and rest[0] in jobs:
        job, rest = rest[0], rest[1:]
    return replace(_verb(verb, rest, words[0], jobs), job=job)


def _verb(verb: str, rest: list[str], typed: str, jobs: Collection[str]) -> Command:
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
            if verb != "help" and len(jobs) > 1:
                raise BadInput(f"`{verb}` takes a job's name and nothing else; no job is named "
                               f"`{truncate_word(rest[0])}` (the jobs: {', '.join(f'`{j}`' for j in jobs)})")
            raise BadInput(f"`{verb}` takes nothing after it")
        return Command(verb)  # type: ignore[arg-type]
    raise BadInput(f"I don't know `{truncate_word(typed)}`")


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
