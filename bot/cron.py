"""Crontab expressions with standard (Vixie cron) semantics, and an APScheduler 3 trigger for them.

This is the only module that knows cron rules. APScheduler 3's ``CronTrigger.from_crontab`` is
not crontab: weekday 0 is Monday there, and day-of-month with day-of-week are ANDed (APScheduler
issue #286, PR #381), so a user's crontab line would silently fire on the wrong days. Here:

* 5 fields ``minute hour day-of-month month day-of-week``, or 6 with seconds first;
* ``*``, numbers, ranges ``a-b``, steps ``*/n`` ``a-b/n`` ``a/n``, lists; month and weekday names;
* weekday 0 and 7 are Sunday; a weekday range ending in Sunday written 0 or ``SUN`` ends in 7
  (``SAT-SUN`` = 6-7, ``FRI-SUN`` = ``5-0`` = 5-7), as cronie's current ``get_range`` reads it
  (cronie PR #200, 2025: ``if (low_ > high_ && high_ == 0) high_ = 7;``); ``0-0`` stays Sunday.
  cronie's ``get_range`` does not know the field and rewrites in every field (hours ``5-0`` are
  5-7 there); here only the weekday field does, and every other backwards range is refused (as
  cronie at 4cd4d2e did; its current source loads one as an empty range, which never fires);
* when both day-of-month and day-of-week are restricted, a day matches if *either* does; a field
  is restricted when it does not start with ``*`` (crontab(5) as Debian words it: ``*/2`` is not
  restricted, so ``0 0 */2 * 1`` means odd days that are Mondays);
* the macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.

Two extensions that cronie refuses are accepted because existing schedules use them: a step after
a single number (``5/20`` = ``5-59/20``; cronie's ``get_range`` allows ``/`` only after ``*`` or a
range) and macros in any case (``@Daily``; cronie compares them with ``strcmp``). A weekday range
ending in 0 or ``SUN`` with a step (``5-0/2``) is refused: cronie skips the 0-to-7 rewrite when a
step follows and loads it as an empty range, which never fires.

Wall-clock times are read in the configured zone. Across daylight-saving changes the fire times
are those of cronie, the cron of Fedora/RHEL, as its main loop in ``src/cron.c`` behaves (the
crontab(5) text about DST is out of date; read at https://github.com/cronie-crond/cronie, cron.c
at commit 2f759ba, entry.c at 4cd4d2e, job.c at 043670b). The tests compare with an independent
simulation of that loop (``tests/cronie_ref.py``).

* An expression is **wildcard** when its minute field or its hour field, *as written*, starts with
  ``*``: cronie's ``src/entry.c`` sets ``MIN_STAR``/``HR_STAR`` from the field's first character
  (``if (ch == '*') e->flags |= MIN_STAR;``) and ``@hourly`` sets ``HR_STAR``. So ``*/15 2 * * *``,
  ``0 */2 * * *``, ``0 * * * *`` and ``@hourly`` are wildcard; ``30 2 * * *``, ``0 0,12 * * *``,
  ``@daily`` and ``30 0-23 * * *`` (a range that happens to cover every hour) are **fixed**. With
  seconds first, the minute and hour fields decide all the same.
* Spring forward (the clock jumps ahead, a gap of wall times that do not exist): a fixed
  expression's times in the gap fire once, at the first instant after the gap (02:30 on the night
  02:00 jumps to 03:00 fires at 03:00); a wildcard expression's times in the gap are skipped.
  cron.c's "DST begins" case: ``find_jobs(timeRunning, &database, TRUE, FALSE, GMToff)`` runs the
  wildcard jobs of the current minute only, then ``find_jobs(virtualTime, &database, FALSE, TRUE,
  oldGMToff)`` runs the fixed jobs of every skipped virtual minute, all at that wake-up.
* Fall back (an hour repeats): a fixed expression fires once, in the first pass; a wildcard one
  fires in both passes. cron.c's "DST ends" case: while the clock is behind ``virtualTime``,
  ``find_jobs(timeRunning, &database, TRUE, FALSE, GMToff)`` runs wildcard jobs only, and virtual
  time does not move until real time catches up with it.

A fire is identified by its instant, so wall times that land on the same instant are one fire:
every gap time of a fixed expression, and the first time after the gap, coalesce into the single
fire at the end of the gap (``0,30 2 * * *`` fires once at 03:00 that night; ``0 2,3 * * *`` too).
(cronie itself starts the job once per missed minute there, seconds apart: its "DST begins" loop
calls ``job_runqueue()`` before each virtual minute, and ``job_add`` only merges a job queued twice
in the same minute. One run is what a schedule of fires can express.)

cron.c also has a "woke up late" case, for a clock that moved ahead by at most 5 minutes (every
missed minute runs, wildcard or not), and a "clock jumped" case beyond 3 hours either way (virtual
time jumps, the current minute runs). No zone's DST change is that small or that large today (the
smallest is Lord Howe's 30 minutes, the largest 2 hours); every offset change is treated here by
the rules above.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

from bot.errors import CronError

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]
_DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# How far a search for the next matching wall time looks. The Gregorian calendar repeats every
# 400 years (146097 days, exactly 20871 weeks), so a month/day/weekday combination that occurs at
# all occurs in any 400 consecutive years: a search that finds nothing in 400 years never would.
# The rarest expressions that pass validation need decades, not 8 years: "0 0 29 2 */7" (29
# February that is a Sunday) fires in 2032, 2060, 2088 and then 2128, 40 years later, because 2100
# is not a leap year. The search skips whole months and days: the 40 years take a millisecond, and
# 400 fruitless years (impossible for an expression that passed validation) a few dozen.
_MAX_YEARS = 400
_ITEM = re.compile(r"^(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/(\d+))?$")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Sequence[str] = ()


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 0, 7, _DAYS)


def _value(text: str, field: _Field) -> int:
    if text.isdigit():
        value = int(text)
    elif text in field.names:
        value = field.names.index(text) + (1 if field is _MONTH else 0)
    else:
        raise CronError(f"{field.name}: {text!r} is not a number or a name")
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        match = _ITEM.match(item)
        if not match:
            raise CronError(f"{field.name}: cannot read {item!r}")
        star, first, last, step_text = match.groups()
        if star:
            low, high = field.low, field.high
        else:
            low = _value(first, field)
            # "a/n" means "a-max/n" (as croniter reads it): an extension, cronie refuses it.
            high = _value(last, field) if last else (field.high if step_text else low)
            if field is _DOW and last and high == 0 and low > 0:
                # A weekday range ending in Sunday written 0 or SUN ends in 7: SAT-SUN is 6-7, FRI-SUN
                # and 5-0 are 5-7 (cronie's get_range since PR #200). 0-0 and SUN-SUN stay Sunday.
                # cronie rewrites only when no step follows (it loads 5-0/2 as an empty range, which
                # never fires): refused here, as every schedule that never fires is.
                if step_text:
                    raise CronError(f"{field.name}: a range ending in Sunday takes no step "
                                    f"(cronie reads {first}-{last}/{step_text} as empty): write {low}-7/{step_text}")
                high = 7
        step = int(step_text) if step_text else 1
        if step < 1:
            raise CronError(f"{field.name}: step must be at least 1")
        if low > high:
            raise CronError(f"{field.name}: range {low}-{high} runs backwards")
        values.update(range(low, high + 1, step))
    if field is _DOW and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def _exists(wall: datetime, tz: tzinfo) -> bool:
    """Whether a naive wall-clock time exists in ``tz`` (it does not inside a spring-forward gap)."""
    aware = wall.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


_Kind = Literal["normal", "repeated", "gap"]


def _kind(wall: datetime, tz: tzinfo) -> _Kind:
    """Whether naive ``wall`` happens once in ``tz``, twice (fall back) or never (spring forward)."""
    if wall.replace(tzinfo=tz, fold=0).utcoffset() == wall.replace(tzinfo=tz, fold=1).utcoffset():
        return "normal"
    return "repeated" if _exists(wall, tz) else "gap"


@dataclass(frozen=True)
class _Change:
    """A change of UTC offset: at instant ``at`` (UTC), ``before`` becomes ``after``."""

    at: datetime
    before: timedelta
    after: timedelta

    @property
    def affected(self) -> tuple[datetime, datetime]:
        """The naive wall times ``[low, high)`` that repeat (fall back) or are missing (spring forward)."""
        wall = self.at.replace(tzinfo=None)
        return wall + min(self.before, self.after), wall + max(self.before, self.after)


def _change(wall: datetime, tz: tzinfo) -> _Change:
    """The offset change that makes the naive whole-second ``wall`` repeat or go missing in ``tz``.

    PEP 495: for such a wall time ``fold=0`` takes the offset before the change, ``fold=1`` the one
    after. The change is at an instant in ``(wall - larger offset, wall - smaller offset]``; bisect
    it to the second.
    """
    before, after = wall.replace(tzinfo=tz, fold=0).utcoffset(), wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert before is not None and after is not None and before != after
    low = int((wall - max(before, after)).replace(tzinfo=UTC).timestamp())  # still ``before``
    high = int((wall - min(before, after)).replace(tzinfo=UTC).timestamp())  # already ``after``
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return _Change(datetime.fromtimestamp(high, UTC), before, after)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed crontab expression. Build it with :meth:`parse`."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool
    # cronie's MIN_STAR | HR_STAR: the minute or the hour field, as written, starts with "*".
    # Decides what happens across DST changes (see the module docstring).
    wildcard: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        """Parse ``text``; raise :class:`CronError` saying what is wrong."""
        original = text.strip()
        expanded = _MACROS.get(original.lower(), original)
        if expanded.startswith("@"):
            raise CronError(f"unknown macro {original!r}")
        fields = expanded.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise CronError(
                f"expected 5 fields (minute hour day month weekday) or 6 with seconds first, "
                f"got {len(fields)}"
            )
        sec, minute, hour, dom, month, dow = fields
        schedule = cls(
            text=original,
            seconds=tuple(sorted(_parse_field(sec, _SECOND))),
            minutes=tuple(sorted(_parse_field(minute, _MINUTE))),
            hours=tuple(sorted(_parse_field(hour, _HOUR))),
            days=_parse_field(dom, _DOM),
            months=tuple(sorted(_parse_field(month, _MONTH))),
            weekdays=_parse_field(dow, _DOW),
            days_restricted=not dom.startswith("*"),
            weekdays_restricted=not dow.startswith("*"),
            # Decided from the text, as cronie's entry.c does, never from the sets: "30 0-23 * * *"
            # is fixed though its hours are all the hours. Macros were expanded above, so
            # "@hourly" (0 * * * *) is wildcard and "@daily" (0 0 * * *) fixed, as in entry.c.
            wildcard=minute.startswith("*") or hour.startswith("*"),
        )
        if not schedule.weekdays_restricted and not any(
            day <= _days_in_month(2024, m) for m in schedule.months for day in schedule.days
        ):
            raise CronError("this day-of-month never occurs in these months, so it would never run")
        return schedule

    # -- matching ---------------------------------------------------------------------------

    def _day_matches(self, day: datetime) -> bool:
        in_days = day.day in self.days
        in_weekdays = (day.weekday() + 1) % 7 in self.weekdays  # Python: Monday=0; cron: Sunday=0
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _next_wall(self, wall: datetime) -> datetime:
        """The first naive wall-clock time at or after ``wall`` that the expression names."""
        limit = min(wall.year + _MAX_YEARS, MAXYEAR - 1)
        while wall.year <= limit:
            if wall.month not in self.months:
                i = bisect.bisect_right(self.months, wall.month)
                year = wall.year if i < len(self.months) else wall.year + 1
                wall = datetime(year, self.months[i % len(self.months)], 1)
                continue
            if not self._day_matches(wall):
                day = wall.day + 1
                if not (self.days_restricted and self.weekdays_restricted):
                    # The day of the month must match too: go straight to the next one that does.
                    day = min((d for d in self.days if d > wall.day), default=32)
                if day > _days_in_month(wall.year, wall.month):
                    wall = datetime(wall.year + wall.month // 12, wall.month % 12 + 1, 1)
                else:
                    wall = datetime(wall.year, wall.month, day)
                continue
            if wall.hour not in self.hours:
                i = bisect.bisect_right(self.hours, wall.hour)
                if i == len(self.hours):
                    wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
                else:
                    wall = wall.replace(hour=self.hours[i], minute=0, second=0)
                continue
            if wall.minute not in self.minutes:
                i = bisect.bisect_right(self.minutes, wall.minute)
                if i == len(self.minutes):
                    wall = wall.replace(minute=0, second=0) + timedelta(hours=1)
                else:
                    wall = wall.replace(minute=self.minutes[i], second=0)
                continue
            if wall.second not in self.seconds:
                i = bisect.bisect_right(self.seconds, wall.second)
                if i == len(self.seconds):
                    wall = wall.replace(second=0) + timedelta(minutes=1)
                else:
                    wall = wall.replace(second=self.seconds[i])
                continue
            return wall
        raise CronError(f"{self.text!r} has no fire time within {_MAX_YEARS} years")

    def _first_fire_from(self, wall: datetime, after_utc: datetime, tz: tzinfo) -> datetime:
        """The earliest fire later than ``after_utc`` among the *first* instants of the wall times
        from naive ``wall`` on: a repeated wall time's first pass; a fixed expression's wall time in
        a gap fires at the end of the gap. These instants never decrease as wall time increases,
        so the first one later than ``after_utc`` is the earliest."""
        wall = self._next_wall(wall)
        while True:
            kind = _kind(wall, tz)
            if kind == "gap":
                change = _change(wall, tz)
                if self.wildcard:  # its times in the gap are skipped: go on after the gap
                    wall = self._next_wall(change.affected[1])
                    continue
                instant = change.at  # fixed: the first instant after the gap
            else:  # fold=0 is the first pass of a repeated time (PEP 495)
                instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
            if instant > after_utc:
                return instant
            wall = self._next_wall(wall + timedelta(seconds=1))

    def _second_pass_fire(self, after_utc: datetime, change: _Change) -> datetime | None:
        """The earliest second-pass fire of the repeated hour of ``change`` later than ``after_utc``."""
        low, high = change.affected
        # A repeated wall time w fires its second pass at w - change.after.
        wall = max(low, (after_utc.replace(tzinfo=None) + change.after).replace(microsecond=0))
        wall = self._next_wall(wall)
        while wall < high:
            instant = (wall - change.after).replace(tzinfo=UTC)
            if instant > after_utc:
                return instant
            wall = self._next_wall(wall + timedelta(seconds=1))
        return None

    def next_after(self, after: datetime, tz: tzinfo) -> datetime:
        """The first fire instant strictly after ``after`` (an aware datetime), in ``tz``.

        Two increasing sequences make up the fires: the first instant of every matching wall time
        (its only one, its first pass when it repeats, the end of the gap for a fixed expression's
        time in a gap) and, for a wildcard expression, the second pass of repeated wall times. The
        second can come first only while ``after`` is inside a repeated hour.
        """
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time and ignore
        # ``fold`` (PEP 495), which would make the two passes of a repeated hour look equal.
        after_utc = after.astimezone(UTC)
        local = after_utc.astimezone(tz)
        wall = local.replace(tzinfo=None, microsecond=0, fold=0)
        second_pass = None
        if _kind(wall, tz) == "repeated":
            change = _change(wall, tz)
            if local.fold == 1:
                # ``after`` is in the second pass: every first pass of the repeated hour is over.
                wall = change.affected[1]
            if self.wildcard:
                second_pass = self._second_pass_fire(after_utc, change)
        best = self._first_fire_from(wall, after_utc, tz)
        if second_pass is not None and second_pass < best:
            best = second_pass
        return best.astimezone(tz)

    def latest_between(self, since: datetime, until: datetime, tz: tzinfo) -> datetime | None:
        """The last fire instant in ``(since, until]``, or None."""
        latest = None
        after = since
        while (fire := self.next_after(after, tz)) <= until:
            latest = after = fire
        return latest

    def iter_after(self, after: datetime, tz: tzinfo, count: int) -> list[datetime]:
        """The next ``count`` fire instants after ``after``."""
        out: list[datetime] = []
        for _ in range(count):
            after = self.next_after(after, tz)
            out.append(after)
        return out

    # -- words ------------------------------------------------------------------------------

    def describe(self) -> str:
        """The schedule in plain English, e.g. ``every 3 seconds`` or ``at 00:01 every day``."""
        time = self._describe_time()
        # "every day" reads well after a time of day ("at 00:01"), not after "every 3 seconds".
        return f"{time}{self._describe_days(daily=time.startswith('at '))}"

    def _describe_time(self) -> str:
        all_sec, all_min, all_hour = (
            self.seconds == tuple(range(60)), self.minutes == tuple(range(60)), self.hours == tuple(range(24))
        )
        sec_step, min_step, hour_step = _step(self.seconds, 60), _step(self.minutes, 60), _step(self.hours, 24)
        if self.seconds != (0,):
            if all_min and all_hour:
                if all_sec:
                    return "every second"
                if sec_step:
                    return f"every {sec_step} seconds"
                return f"every minute at second {_join(map(str, self.seconds))}"
            return (
                f"at second {_join(map(str, self.seconds))} of minute {_join(map(str, self.minutes))} "
                f"past hour {_join(map(str, self.hours))}"
            )
        if all_hour:
            if all_min:
                return "every minute"
            if min_step:
                return f"every {min_step} minutes"
            return f"every hour at minute {_join(map(str, self.minutes))}"
        if hour_step and len(self.minutes) == 1:
            return f"every {hour_step} hours at minute {self.minutes[0]}"
        if len(self.minutes) * len(self.hours) <= 6:
            return "at " + _join(f"{h:02d}:{m:02d}" for h in self.hours for m in self.minutes)
        if all_min:
            return f"every minute during hour {_join(map(str, self.hours))}"
        return f"at minute {_join(map(str, self.minutes))} past hour {_join(map(str, self.hours))}"

    def _describe_days(self, *, daily: bool) -> str:
        some_days = self.days != frozenset(range(1, 32))
        some_weekdays = self.weekdays != frozenset(range(7))
        days_text = f"on {'day' if len(self.days) == 1 else 'days'} {_short_list(sorted(self.days))} of the month"
        weekdays_text = _weekday_words(sorted(self.weekdays))
        if self.days_restricted and self.weekdays_restricted:
            days = f" {days_text} or on {weekdays_text}"  # crontab's OR
        elif some_days and some_weekdays:
            days = f" {days_text} that fall on a {weekdays_text}"  # a field starting with "*": AND
        elif some_days:
            days = f" {days_text}"
        elif some_weekdays:
            days = f" on {weekdays_text}"
        else:
            days = " every day" if daily else ""
        if self.months != tuple(range(1, 13)):
            days += " in " + _join(_MONTH_NAMES[m - 1] for m in self.months)
        return days


def _step(values: Sequence[int], size: int) -> int | None:
    """n if ``values`` is exactly ``0, n, 2n, …`` covering the field (``*/n``), else None."""
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1] - values[0]
    return step if tuple(range(0, size, step)) == tuple(values) else None


def _short_list(values: list[int]) -> str:
    if len(values) <= 6:
        return _join(map(str, values))
    return ", ".join(map(str, values[:3])) + ", …, " + str(values[-1])


def _join(items: Iterable[str]) -> str:
    words = [str(item) for item in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _weekday_words(days: list[int]) -> str:
    # Runs of consecutive days read better as ranges: "Monday through Friday".
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    words = [
        f"{_DAY_NAMES[r[0]]} through {_DAY_NAMES[r[-1]]}" if len(r) > 2 else _join(_DAY_NAMES[d] for d in r)
        for r in runs
    ]
    return _join(words)


class CronTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler 3 trigger firing at the instants of a :class:`CronSchedule` in ``tz``."""

    def __init__(self, schedule: CronSchedule, tz: ZoneInfo) -> None:
        self.schedule = schedule
        self.tz = tz

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is not None:
            return self.schedule.next_after(previous_fire_time, self.tz)
        # First computation: a fire exactly at ``now`` still counts.
        return self.schedule.next_after(now - timedelta(microseconds=1), self.tz)

    def __str__(self) -> str:
        return f"cron[{self.schedule.text!r}, {self.tz}]"
