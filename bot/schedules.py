"""The effective schedule of a job: a crontab expression read in an IANA zone, where it came from,
and the one fire to skip.

The schedule lives in PostgreSQL (``foojob_job_state``); this module only holds it as plain data
and answers questions about it (its next fires, whether an instant is one of them). Parsing is
cached by text: every fire checks the row it reads against the schedule it was armed with, and a
changed row must not cost a parse per fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.cron import CronSchedule
from bot.errors import BadInput, CronError

Source = Literal["config", "runtime"]
MAX_NEXT = 50
_TICK = timedelta(microseconds=1)


MAX_CRON = 200  # characters; a Slack button's value (which carries it) holds 2,000


@lru_cache(maxsize=64)
def parse_zone(text: str) -> ZoneInfo:
    """An IANA zone, or BadInput naming the problem. Names only: ``localtime`` (this host's own
    setting, different on each host) is not one."""
    if text not in iana_names():
        raise BadInput(f"timezone: unknown IANA time zone {text[:60]!r} (e.g. UTC, Europe/London)")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadInput(f"timezone: unknown IANA time zone {text[:60]!r} (e.g. UTC, Europe/London)") from None


@lru_cache(maxsize=64)
def parse_cron(text: str) -> CronSchedule:
    """A crontab expression that fires at least once, or BadInput naming the field and the problem."""
    if len(text) > MAX_CRON:
        raise BadInput(f"cron: too long ({len(text)} characters; {MAX_CRON} at most)")
    try:
        schedule = CronSchedule.parse(text)
        schedule.next_after(datetime.now(UTC), ZoneInfo("UTC"))  # one that never fires is refused
    except CronError as exc:
        raise BadInput(f"cron: {exc}") from None
    return schedule


def fires_at(expression: CronSchedule, tz: ZoneInfo, instant: datetime) -> bool:
    """Whether ``instant`` is one of the expression's fires in ``tz``."""
    return expression.next_after(instant - _TICK, tz) == instant


@lru_cache(maxsize=1)
def iana_names() -> frozenset[str]:
    """The zone names a schedule takes."""
    # The host's TZPATH may also list files that are not zones of the IANA database.
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def same_expression(a: str, b: str) -> bool:
    """Whether two crontab texts are the same expression as written (spacing aside)."""
    return a.split() == b.split()


@dataclass(frozen=True)
class Schedule:
    job: str
    expression: CronSchedule
    tz: ZoneInfo
    source: Source
    set_by: str | None  # as pausedBy, plus "deploy"; None: the configured schedule since the first start
    set_at: datetime | None
    version: int
    skip_next: datetime | None = None

    @property
    def cron(self) -> str:
        return self.expression.text

    @property
    def timezone(self) -> str:
        return self.tz.key

    def describe(self) -> str:
        return self.expression.describe()

    def skipped(self, now: datetime | None = None) -> datetime | None:
        """The fire that will be skipped, while it is still to come."""
        now = now or datetime.now(UTC)
        return self.skip_next if self.skip_next is not None and self.skip_next > now else None

    def fires(self, count: int, after: datetime | None = None, *, skip: bool = True) -> list[datetime]:
        """The next ``count`` fire instants after ``after`` (now), without the skipped one."""
        after = after or datetime.now(UTC)
        skipped = self.skipped(after) if skip else None
        out: list[datetime] = []
        while len(out) < count:
            after = self.expression.next_after(after, self.tz)
            if after != skipped:
                out.append(after)
        return out

    def same_as(self, other: Schedule) -> bool:
        return same_expression(self.cron, other.cron) and self.timezone == other.timezone
