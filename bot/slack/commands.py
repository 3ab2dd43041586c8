"""``/foojob`` text → a command, or a clear complaint with the usage. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from bot.durations import parse_pause_words
from bot.errors import BadInput

Verb = Literal["run-now", "pause", "resume", "status", "history", "help"]
MUTATING: frozenset[str] = frozenset({"run-now", "pause", "resume"})
MAX_HISTORY = 25
MAX_REASON = 500

USAGE = """*Usage:* `/foojob <verb>`
• `/foojob run-now` — run the job now (paused or not)
• `/foojob pause [duration] [reason…]` — pause the schedule, e.g. `/foojob pause 2h deploy`
    (durations: `30m`, `2h`, `1d`, `1h30m`; without one, until someone resumes)
• `/foojob resume` — resume the schedule
• `/foojob status` — paused or not, the schedule, the next and the last run
• `/foojob history [n]` — the last runs (10 unless you say, at most 25)
• `/foojob help` — this"""


@dataclass(frozen=True)
class Command:
    verb: Verb
    duration: timedelta | None = None
    reason: str | None = None
    limit: int = 10


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
        if len(rest) > 1 or (rest and not (rest[0].isascii() and rest[0].isdigit() and len(rest[0]) < 4)):
            raise BadInput("`history` takes at most one number: `/foojob history 20`")
        limit = int(rest[0]) if rest else 10
        if not 1 <= limit <= MAX_HISTORY:
            raise BadInput(f"`history` shows 1 to {MAX_HISTORY} runs")
        return Command("history", limit=limit)
    if verb in ("run-now", "resume", "status", "help"):
        if rest:
            raise BadInput(f"`{verb}` takes nothing after it")
        return Command(verb)  # type: ignore[arg-type]
    raise BadInput(f"I don't know `{truncate_word(words[0])}`")


def truncate_word(word: str) -> str:
    return word if len(word) <= 30 else word[:29] + "…"
