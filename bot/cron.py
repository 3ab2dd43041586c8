"""Crontab expressions with standard (Vixie cron) semantics, and an APScheduler 3 trigger for them.

This is the only module that knows cron rules. APScheduler 3's ``CronTrigger.from_crontab`` is
not crontab: weekday 0 is Monday there, and day-of-month with day-of-week are ANDed (APScheduler
issue #286, PR #381), so a user's crontab line would silently fire on the wrong days. Here:

* 5 fields ``minute hour day-of-month month day-of-week``, or 6 with seconds first;
* ``*``, numbers, ranges ``a-b``, steps ``*/n`` ``a-b/n`` ``a/n``, lists; month and weekday names;
* weekday 0 and 7 are Sunday;
* when both day-of-month and day-of-week are restricted, a day matches if *either* does; a field
  is restricted when it does not start with ``*`` (crontab(5) as Debian words it: ``*/2`` is not
  restricted, so ``0 0 */2 * 1`` means odd days that are Mondays);
* the macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.

Wall-clock times are read in the configured zone. Across daylight-saving changes the fire times
are those of croniter, the reference the tests compare against:

* a wall time that does not exist (spring forward) fires at the first existing minute after the
  gap, unless the hour field is ``*`` (then the missing times are simply skipped);
* a wall time that happens twice (fall back) fires at both instants.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
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

# A search for the next fire never needs to look further than this: the rarest expression that
# passes validation (29 February, unrestricted weekday) fires at least every 8 years.
_MAX_YEARS = 30
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
            # "a/n" means "a-max/n", as in cronie and croniter.
            high = _value(last, field) if last else (field.high if step_text else low)
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
        limit = wall.year + _MAX_YEARS
        while wall.year <= limit:
            if wall.month not in self.months:
                i = bisect.bisect_right(self.months, wall.month)
                year = wall.year if i < len(self.months) else wall.year + 1
                wall = datetime(year, self.months[i % len(self.months)], 1)
                continue
            if not self._day_matches(wall):
                wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
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

    def _instants(self, wall: datetime, tz: tzinfo) -> list[datetime]:
        """The instants a matching wall-clock time fires at: none, one, or two (fall back)."""
        early = wall.replace(tzinfo=tz, fold=0)
        late = wall.replace(tzinfo=tz, fold=1)
        if early.utcoffset() == late.utcoffset():
            return [early]
        if _exists(wall, tz):  # repeated hour: fires at both instants (PEP 495: fold=0 is earlier)
            return [early, late]
        if self.hours == tuple(range(24)):  # gap, hour field is "*": skip the missing time
            return []
        shifted = wall  # gap: the first existing minute after it, as croniter does
        while not _exists(shifted, tz):
            shifted += timedelta(minutes=1)
        return [shifted.replace(tzinfo=tz)]

    def next_after(self, after: datetime, tz: tzinfo) -> datetime:
        """The first fire instant strictly after ``after`` (an aware datetime), in ``tz``."""
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time and ignore
        # ``fold`` (PEP 495), which would make the two passes of a repeated hour look equal.
        after_utc = after.astimezone(UTC)
        local = after_utc.astimezone(tz)
        wall = local.replace(tzinfo=None, microsecond=0)
        best: datetime | None = None

        def consider(candidate_wall: datetime) -> bool:
            nonlocal best
            for instant in self._instants(candidate_wall, tz):
                utc = instant.astimezone(UTC)
                if utc > after_utc and (best is None or utc < best):
                    best = utc
                    return True
            return False

        candidate = self._next_wall(wall)
        while not consider(candidate):
            candidate = self._next_wall(candidate + timedelta(seconds=1))
        # The candidate found may be the second pass of a repeated hour; later wall times of the
        # first pass still come before it.
        while True:
            candidate = self._next_wall(candidate + timedelta(seconds=1))
            assert best is not None
            if candidate.replace(tzinfo=tz, fold=0).astimezone(UTC) >= best:
                break
            consider(candidate)

        # ``after`` in the first pass of a repeated hour: wall times just before it come round
        # again in the second pass, and may fire earlier than what the forward search found.
        early, late = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
        if early.utcoffset() != late.utcoffset() and _exists(wall, tz) and local.fold == 0:
            offset_early, offset_late = early.utcoffset(), late.utcoffset()
            assert offset_early is not None and offset_late is not None
            back = self._next_wall(wall - (offset_early - offset_late))
            while back < wall:
                consider(back)
                back = self._next_wall(back + timedelta(seconds=1))
        assert best is not None
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
