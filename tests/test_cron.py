"""Cron semantics: crontab(5) rules by example; cronie's DST rules on real DST dates; and, by
property, the same fire times as a model of cronie's main loop (tests/cronie_ref.py), whose own
reading of the fields is checked against croniter where the two agree (no DST change)."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cron import CronSchedule
from bot.errors import CronError
from tests import cronie_ref

NY = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")


def fires(expr: str, start: datetime, n: int, tz: ZoneInfo = UTC_ZONE) -> list[str]:
    return [t.isoformat() for t in CronSchedule.parse(expr).iter_after(start, tz, n)]


# -- the rules users know from crontab(5) -------------------------------------------------------

def test_weekday_0_and_7_are_sunday_unlike_apscheduler_from_crontab() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
    assert fires("0 9 * * 0", start, 1) == ["2026-01-04T09:00:00+00:00"]  # Sunday
    assert fires("0 9 * * 7", start, 1) == ["2026-01-04T09:00:00+00:00"]
    assert fires("0 9 * * 1", start, 1) == ["2026-01-05T09:00:00+00:00"]  # Monday, not Tuesday


def test_names_and_ranges_of_names() -> None:
    start = datetime(2026, 1, 2, 12, tzinfo=UTC)  # a Friday
    assert fires("30 8 * * MON-FRI", start, 3) == [
        "2026-01-05T08:30:00+00:00", "2026-01-06T08:30:00+00:00", "2026-01-07T08:30:00+00:00"]
    assert fires("0 0 1 jul,Jan *", start, 2) == ["2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    # The 1st and 15th, and every Friday (APScheduler would want a Friday that is the 1st or 15th).
    assert fires("0 0 1,15 * 5", start, 4) == [
        "2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00", "2026-01-15T00:00:00+00:00",
        "2026-01-16T00:00:00+00:00"]
    # Only one restricted: it alone decides.
    assert fires("0 0 13 * *", start, 1) == ["2026-01-13T00:00:00+00:00"]
    # A field starting with "*" is not restricted (crontab(5)): odd days that are also Mondays.
    assert fires("0 0 */2 * mon", start, 2) == ["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00"]


def test_lists_ranges_steps_and_seconds_first() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert fires("*/3 * * * * *", start, 3) == [
        "2026-01-01T00:00:03+00:00", "2026-01-01T00:00:06+00:00", "2026-01-01T00:00:09+00:00"]
    assert fires("0 10-20/5,45 9 * * *", start, 4) == [
        "2026-01-01T09:10:00+00:00", "2026-01-01T09:15:00+00:00", "2026-01-01T09:20:00+00:00",
        "2026-01-01T09:45:00+00:00"]
    assert fires("5/20 * * * *", start, 3) == [
        "2026-01-01T00:05:00+00:00", "2026-01-01T00:25:00+00:00", "2026-01-01T00:45:00+00:00"]
    assert fires("@daily", start, 1) == ["2026-01-02T00:00:00+00:00"]
    assert fires("@weekly", start, 1) == ["2026-01-04T00:00:00+00:00"]


def test_a_one_value_range_is_that_value() -> None:
    # croniter expands "0-0" to "*"; crontab(5) reads a range a-b as a through b.
    start = datetime(2025, 1, 1, tzinfo=UTC)  # a Wednesday
    assert fires("0 12 * * 0-0", start, 1) == ["2025-01-05T12:00:00+00:00"]


def weekdays(iso_times: list[str]) -> list[str]:
    return [datetime.fromisoformat(t).strftime("%a") for t in iso_times]


def test_a_weekday_range_ending_in_sunday_ends_in_7() -> None:
    # cronie's get_range (PR #200): a range whose high end is 0 (written 0 or SUN) ends in 7.
    start = "2026-01-01T12:00:00+00:00"  # a Thursday
    weekend = ["2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00", "2026-01-10T00:00:00+00:00",
               "2026-01-11T00:00:00+00:00"]
    assert weekdays(weekend) == ["Sat", "Sun", "Sat", "Sun"]
    check("0 0 * * SAT-SUN", "UTC", start, weekend)
    check("0 0 * * 6-0", "UTC", start, weekend)
    fri_to_sun = ["2026-01-02T00:00:00+00:00", *weekend[:2], "2026-01-09T00:00:00+00:00", *weekend[2:]]
    assert weekdays(fri_to_sun) == ["Fri", "Sat", "Sun", "Fri", "Sat", "Sun"]
    check("0 0 * * FRI-SUN", "UTC", start, fri_to_sun)
    check("0 0 * * 5-0", "UTC", start, fri_to_sun)
    check("0 0 * * fri-Sun", "UTC", start, fri_to_sun)
    # Sunday really is in: São Paulo's 2018-11-04 (a Sunday) had no midnight, so it fires at 01:00.
    check("0 0 * * SAT-SUN", "America/Sao_Paulo", "2018-11-02T12:00:00-03:00",
          ["2018-11-03T00:00:00-03:00", "2018-11-04T01:00:00-02:00", "2018-11-10T00:00:00-02:00",
           "2018-11-11T00:00:00-02:00"])


@pytest.mark.parametrize(("dow", "days"), [
    ("SAT-SUN", {6, 0}),
    ("6-0", {6, 0}),
    ("FRI-SUN", {5, 6, 0}),
    ("5-0", {5, 6, 0}),
    ("MON-SUN", {0, 1, 2, 3, 4, 5, 6}),
    ("1-0", {0, 1, 2, 3, 4, 5, 6}),
    ("7-0", {0}),
    ("FRI-SUN,TUE", {5, 6, 0, 2}),
    # 0 as the low end stays 0: these are unchanged.
    ("0-0", {0}),
    ("SUN-SUN", {0}),
    ("0-3", {0, 1, 2, 3}),
    ("SUN-WED", {0, 1, 2, 3}),
    ("0-7", {0, 1, 2, 3, 4, 5, 6}),
])
def test_weekday_ranges_ending_in_sunday_read_as_cronie_reads_them(dow: str, days: set[int]) -> None:
    expr = f"0 0 * * {dow}"
    assert CronSchedule.parse(expr).weekdays == days
    assert {d % 7 for d in cronie_ref.parse(expr).dow} == days  # the model: 0 and 7 both Sunday


def test_a_weekday_range_ending_in_sunday_with_a_step_is_refused() -> None:
    # cronie rewrites 0 as 7 only when no step follows, and loads 5-0/n as an empty range that
    # never fires: refused here, naming what to write instead.
    for expr in ("0 0 * * 5-0/1", "0 0 * * FRI-SUN/2"):
        with pytest.raises(CronError, match=r"takes no step .* write 5-7/"):
            CronSchedule.parse(expr)


@pytest.mark.parametrize(("expr", "problem"), [
    ("0 0 * * 5-2", "day-of-week: range 5-2 runs backwards"),
    ("0 0 * * SAT-MON", "day-of-week: range 6-1 runs backwards"),
    ("0 0 * * 6-5/1", "day-of-week: range 6-5 runs backwards"),
    ("0 10-5 * * *", "hour: range 10-5 runs backwards"),
    # Only the weekday field ends a range in 7 (cronie's get_range would read these hours as 5-7).
    ("0 5-0 * * *", "hour: range 5-0 runs backwards"),
])
def test_other_backwards_ranges_are_still_refused(expr: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem):
        CronSchedule.parse(expr)


def test_the_default_schedule_one_minute_past_midnight_in_the_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    assert fires("1 0 * * *", datetime(2026, 1, 1, 12, tzinfo=UTC), 1, tokyo) == ["2026-01-02T00:01:00+09:00"]


# -- DST, as cronie does it (src/cron.c), on real DST dates ---------------------------------------

def check(expr: str, zone: str, start: str, expected: list[str]) -> None:
    """The fires of ``expr`` after ``start`` are ``expected``, here and in the model of cronie."""
    tz = ZoneInfo(zone)
    after = datetime.fromisoformat(start)
    ours = [t.isoformat() for t in CronSchedule.parse(expr).iter_after(after, tz, len(expected))]
    model = cronie_ref.fires(cronie_ref.parse(expr), zone, after, len(expected), after + timedelta(days=400))
    assert ours == expected, f"{expr!r} in {zone} after {start}"
    assert [t.astimezone(tz).isoformat() for t in model] == expected, f"cronie model: {expr!r} in {zone}"


@pytest.mark.parametrize(("expr", "wildcard"), [
    ("*/15 2 * * *", True),  # a star, with a step
    ("0 */2 * * *", True),
    ("0 * * * *", True),
    ("* 5 * * *", True),
    ("*,5 2 * * *", True),  # the first character decides
    ("@hourly", True),  # 0 * * * *
    ("30 2 * * *", False),
    ("0 0,12 * * *", False),
    ("30 0-23 * * *", False),  # every hour, but not written with a star
    ("0-59 2 * * *", False),
    ("5,*/10 2 * * *", False),
    ("30 2 */2 * *", False),  # only the minute and hour fields count
    ("@daily", False),
    ("@weekly", False),
    ("*/5 30 2 * * *", False),  # seconds first: the seconds field does not count
    ("0 * 2 * * *", True),
    ("0 30 */2 * * *", True),
])
def test_wildcard_is_decided_by_the_minute_and_hour_fields_as_written(expr: str, wildcard: bool) -> None:
    assert CronSchedule.parse(expr).wildcard is wildcard
    assert cronie_ref.parse(expr).wild is wildcard  # entry.c: MIN_STAR | HR_STAR


def test_spring_forward_a_fixed_time_in_the_gap_runs_at_the_first_minute_after_it() -> None:
    # New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
    check("30 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
          ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"])
    # Fixed, though the range covers every hour: 02:30 is moved, not skipped.
    check("30 0-23 * * *", "America/New_York", "2026-03-08T00:00:00-05:00",
          ["2026-03-08T00:30:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00",
           "2026-03-08T03:30:00-04:00"])
    # Seconds first: the minute and hour fields decide, and the fire is at the end of the gap.
    check("*/20 30 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
          ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-09T02:30:20-04:00"])


def test_spring_forward_several_times_of_a_fixed_job_coalesce_into_one_fire() -> None:
    # A fire is an instant: 02:00, 02:30 (both missing) and 03:00 all land on 03:00 EDT.
    check("0,30 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
          ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"])
    check("0 2,3 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
          ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T03:00:00-04:00"])


def test_spring_forward_a_wildcard_job_skips_its_times_in_the_gap() -> None:
    # Wildcard because the minute field starts with "*", though the hour is fixed: all four of
    # the night's times are missing, so nothing runs that night.
    check("*/15 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
          ["2026-03-09T02:00:00-04:00", "2026-03-09T02:15:00-04:00", "2026-03-09T02:30:00-04:00",
           "2026-03-09T02:45:00-04:00"])
    check("0 */2 * * *", "America/New_York", "2026-03-07T23:00:00-05:00",
          ["2026-03-08T00:00:00-05:00", "2026-03-08T04:00:00-04:00", "2026-03-08T06:00:00-04:00"])
    check("45 * * * *", "America/New_York", "2026-03-08T01:00:00-05:00",
          ["2026-03-08T01:45:00-05:00", "2026-03-08T03:45:00-04:00"])
    check("@hourly", "America/New_York", "2026-03-08T00:30:00-05:00",
          ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"])
    check("10 */30 * * * *", "America/New_York", "2026-03-08T01:31:00-05:00",
          ["2026-03-08T03:00:10-04:00", "2026-03-08T03:30:10-04:00"])


def test_fall_back_a_fixed_job_runs_once_in_the_first_pass() -> None:
    # New York, 2026-11-01: 02:00 EDT becomes 01:00 EST, so 01:00-01:59 happens twice.
    check("30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
          ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"])
    check("30 0-23 * * *", "America/New_York", "2026-11-01T00:00:00-04:00",
          ["2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T02:30:00-05:00",
           "2026-11-01T03:30:00-05:00"])
    check("0 30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
          ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"])


def test_fall_back_a_wildcard_job_runs_in_both_passes() -> None:
    check("*/15 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
          ["2026-11-01T01:00:00-04:00", "2026-11-01T01:15:00-04:00", "2026-11-01T01:30:00-04:00",
           "2026-11-01T01:45:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00",
           "2026-11-01T01:30:00-05:00", "2026-11-01T01:45:00-05:00", "2026-11-02T01:00:00-05:00"])
    check("30 */1 * * *", "America/New_York", "2026-11-01T00:45:00-04:00",
          ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:30:00-05:00"])
    check("@hourly", "America/New_York", "2026-11-01T00:30:00-04:00",
          ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"])


def test_fall_back_starting_inside_the_repeated_hour() -> None:
    # From the first pass: a fixed job is done for the night, a wildcard one has the second pass.
    check("30 1 * * *", "America/New_York", "2026-11-01T01:45:00-04:00", ["2026-11-02T01:30:00-05:00"])
    check("*/15 1 * * *", "America/New_York", "2026-11-01T01:50:00-04:00",
          ["2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00"])
    # From the second pass.
    check("30 1 * * *", "America/New_York", "2026-11-01T01:10:00-05:00", ["2026-11-02T01:30:00-05:00"])
    check("*/15 1 * * *", "America/New_York", "2026-11-01T01:20:00-05:00",
          ["2026-11-01T01:30:00-05:00", "2026-11-01T01:45:00-05:00", "2026-11-02T01:00:00-05:00"])


def test_latest_fire_of_a_window_in_the_repeated_hour() -> None:
    # What start-up catch-up asks: a fixed job's 01:30 was in the first pass, not in the second.
    since, until = datetime(2026, 11, 1, 1, 0, tzinfo=NY, fold=1), datetime(2026, 11, 1, 1, 59, tzinfo=NY, fold=1)
    assert CronSchedule.parse("30 1 * * *").latest_between(since, until, NY) is None
    latest = CronSchedule.parse("*/15 1 * * *").latest_between(since, until, NY)
    assert latest is not None and latest.isoformat() == "2026-11-01T01:45:00-05:00"


def test_london() -> None:
    # 2026-03-29: 01:00 GMT becomes 02:00 BST; 2026-10-25: 02:00 BST becomes 01:00 GMT.
    check("30 1 * * *", "Europe/London", "2026-03-28T12:00:00+00:00",
          ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"])
    check("*/30 1 * * *", "Europe/London", "2026-03-28T12:00:00+00:00",
          ["2026-03-30T01:00:00+01:00", "2026-03-30T01:30:00+01:00"])
    check("30 1 * * *", "Europe/London", "2026-10-24T12:00:00+01:00",
          ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"])
    check("*/30 1 * * *", "Europe/London", "2026-10-24T12:00:00+01:00",
          ["2026-10-25T01:00:00+01:00", "2026-10-25T01:30:00+01:00", "2026-10-25T01:00:00+00:00",
           "2026-10-25T01:30:00+00:00"])


def test_lord_howe_half_hour_shift() -> None:
    # 2026-10-04: 02:00 +10:30 becomes 02:30 +11; 2026-04-05: 02:00 +11 becomes 01:30 +10:30.
    check("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00+10:30",
          ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"])
    check("*/15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00+10:30",
          ["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00", "2026-10-05T02:00:00+11:00"])
    check("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00:00+11:00",
          ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"])
    check("*/15 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00:00+11:00",
          ["2026-04-05T01:00:00+11:00", "2026-04-05T01:15:00+11:00", "2026-04-05T01:30:00+11:00",
           "2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30",
           "2026-04-06T01:00:00+10:30"])


def test_chatham_quarter_to_the_hour_shift() -> None:
    # 2026-09-27: 02:45 +12:45 becomes 03:45 +13:45; 2026-04-05: 03:45 +13:45 becomes 02:45 +12:45.
    check("30 0-23 * * *", "Pacific/Chatham", "2026-09-27T01:00:00+12:45",
          ["2026-09-27T01:30:00+12:45", "2026-09-27T02:30:00+12:45", "2026-09-27T03:45:00+13:45",
           "2026-09-27T04:30:00+13:45"])
    check("*/15 3 * * *", "Pacific/Chatham", "2026-09-26T12:00:00+12:45",
          ["2026-09-27T03:45:00+13:45", "2026-09-28T03:00:00+13:45"])
    check("0 3 * * *", "Pacific/Chatham", "2026-04-04T12:00:00+13:45",
          ["2026-04-05T03:00:00+13:45", "2026-04-06T03:00:00+12:45"])
    check("*/30 3 * * *", "Pacific/Chatham", "2026-04-04T12:00:00+13:45",
          ["2026-04-05T03:00:00+13:45", "2026-04-05T03:30:00+13:45", "2026-04-05T03:00:00+12:45",
           "2026-04-05T03:30:00+12:45", "2026-04-06T03:00:00+12:45"])


def test_sao_paulo_midnight_gap() -> None:
    # 2018-11-04 (a Sunday): 00:00 -03 became 01:00 -02, so that day had no midnight.
    check("@daily", "America/Sao_Paulo", "2018-11-03T12:00:00-03:00",
          ["2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"])
    check("0 0 * * SUN", "America/Sao_Paulo", "2018-11-03T12:00:00-03:00",
          ["2018-11-04T01:00:00-02:00", "2018-11-11T00:00:00-02:00"])
    check("@hourly", "America/Sao_Paulo", "2018-11-03T22:30:00-03:00",
          ["2018-11-03T23:00:00-03:00", "2018-11-04T01:00:00-02:00", "2018-11-04T02:00:00-02:00"])
    check("30 0-23 * * *", "America/Sao_Paulo", "2018-11-03T23:00:00-03:00",
          ["2018-11-03T23:30:00-03:00", "2018-11-04T01:00:00-02:00", "2018-11-04T01:30:00-02:00"])
    # 2019-02-17: 00:00 -02 became 23:00 -03 on the 16th, which had 23:00-23:59 twice.
    check("30 23 * * *", "America/Sao_Paulo", "2019-02-16T12:00:00-02:00",
          ["2019-02-16T23:30:00-02:00", "2019-02-17T23:30:00-03:00"])
    check("@hourly", "America/Sao_Paulo", "2019-02-16T22:30:00-02:00",
          ["2019-02-16T23:00:00-02:00", "2019-02-16T23:00:00-03:00", "2019-02-17T00:00:00-03:00"])


# -- extensions, and the rarest schedules ---------------------------------------------------------

@pytest.mark.parametrize(("extension", "standard"), [
    ("@Daily", "@daily"),
    ("@HOURLY", "@hourly"),
    ("5/20 * * * *", "5-59/20 * * * *"),
    ("0 3/6 * * *", "0 3-23/6 * * *"),
])
def test_extensions_cronie_refuses_are_accepted(extension: str, standard: str) -> None:
    with pytest.raises(cronie_ref.Refused):
        cronie_ref.parse(extension)
    ours, theirs = CronSchedule.parse(extension), CronSchedule.parse(standard)
    start = datetime(2026, 3, 7, 12, tzinfo=NY)
    assert ours.iter_after(start, NY, 30) == theirs.iter_after(start, NY, 30)
    assert ours.wildcard is theirs.wildcard


def test_the_rarest_schedules_are_found_even_decades_away() -> None:
    # 29 February that is a Sunday: 28 years apart, then 40 across 2100, which is not a leap year.
    assert fires("0 0 29 2 */7", datetime(2026, 1, 1, tzinfo=UTC), 4) == [
        "2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00", "2088-02-29T00:00:00+00:00",
        "2128-02-29T00:00:00+00:00"]
    assert fires("0 0 29 2 */7", datetime(2088, 3, 1, tzinfo=UTC), 1) == ["2128-02-29T00:00:00+00:00"]
    # Both day fields restricted: either matches, so the first Sunday of February will do.
    assert fires("0 0 29 2 sun", datetime(2088, 3, 1, tzinfo=UTC), 1) == ["2089-02-06T00:00:00+00:00"]


def test_time_in_the_middle_of_a_second_and_exact_boundaries() -> None:
    schedule = CronSchedule.parse("*/3 * * * * *")
    at = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert schedule.next_after(at, UTC) == at + timedelta(seconds=3)  # strictly after
    assert schedule.next_after(at - timedelta(microseconds=1), UTC) == at


@pytest.mark.parametrize(("expr", "problem"), [
    ("", "expected 5 fields"),
    ("* * * *", "expected 5 fields"),
    ("* * * * * * *", "expected 5 fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 24 * * *", "hour: 24 is outside 0-23"),
    ("* * 0 * *", "day-of-month: 0 is outside 1-31"),
    ("* * * 13 *", "month: 13 is outside 1-12"),
    ("* * * * 8", "day-of-week: 8 is outside 0-7"),
    ("* * * * FOO", "day-of-week: 'foo' is not a number or a name"),
    ("*/0 * * * *", "step must be at least 1"),
    ("30-10 * * * *", "runs backwards"),
    ("0 0 30 2 *", "never"),
    ("@reboot", "unknown macro"),
    ("1,,2 * * * *", "cannot read"),
])
def test_bad_expressions_say_what_is_wrong(expr: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem):
        CronSchedule.parse(expr)


@pytest.mark.parametrize(("expr", "words"), [
    ("*/3 * * * * *", "every 3 seconds"),
    ("* * * * *", "every minute"),
    ("*/15 * * * *", "every 15 minutes"),
    ("1 0 * * *", "at 00:01 every day"),
    ("0 9,17 * * MON-FRI", "at 09:00 and 17:00 on Monday through Friday"),
    ("0 0 1 * *", "at 00:00 on day 1 of the month"),
    ("5 * * * *", "every hour at minute 5"),
    ("0 */6 * * *", "every 6 hours at minute 0"),
    ("0 0 1 1 *", "at 00:00 on day 1 of the month in January"),
    ("0 0 */2 * *", "at 00:00 on days 1, 3, 5, …, 31 of the month"),
    ("0 0 * * */2", "at 00:00 on Sunday, Tuesday, Thursday and Saturday"),
    ("0 0 */2 * MON", "at 00:00 on days 1, 3, 5, …, 31 of the month that fall on a Monday"),
    ("0 0 1,15 * FRI", "at 00:00 on days 1 and 15 of the month or on Friday"),
    ("0 0 * * 1-5", "at 00:00 on Monday through Friday"),
])
def test_schedule_in_words(expr: str, words: str) -> None:
    assert CronSchedule.parse(expr).describe() == words


# -- property: the fires equal those of the model of cronie's main loop ----------------------------

ZONES = ["UTC", "America/New_York", "Europe/London", "Europe/Dublin", "Australia/Lord_Howe",
         "America/Santiago", "Pacific/Chatham", "America/Havana", "Asia/Tokyo", "Australia/Sydney",
         "Europe/Berlin", "Asia/Kolkata", "America/St_Johns", "America/Sao_Paulo"]
N = 50
HORIZON = timedelta(days=366 * 8)
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MACROS = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]


@functools.cache
def changes(zone: str) -> list[datetime]:
    """The UTC offset changes of ``zone`` in 2017-2027 (São Paulo still had DST until 2019)."""
    return [datetime.fromtimestamp(t, UTC) for year in range(2017, 2028)
            for t in cronie_ref._changes_in_year(zone, year)]


@dataclass(frozen=True)
class _Field:
    """Strategies for one field: written starting with "*" or not (what makes cronie's wildcard)."""

    star_led: st.SearchStrategy[str]
    not_star_led: st.SearchStrategy[str]

    @property
    def any(self) -> st.SearchStrategy[str]:
        return st.one_of(self.not_star_led, self.star_led)


def _field(low: int, high: int, names: list[str] | None = None, *, stars_in_lists: bool = True,
           one_value_ranges: bool = True, placeholders: tuple[str, ...] = ()) -> _Field:
    number = st.integers(low, high)
    value = number.map(str)
    if names:
        value = st.one_of(value, st.sampled_from(names), st.sampled_from(names).map(str.upper))
    span = st.tuples(number, number).map(sorted)
    if not one_value_ranges:  # croniter reads "3-3" as "*", a bug of its own
        span = span.filter(lambda ab: ab[0] != ab[1])
    step = st.integers(1, max(1, (high - low) // 2))
    star_free = st.one_of(value, span.map(lambda ab: f"{ab[0]}-{ab[1]}"),
                          st.tuples(span, step).map(lambda x: f"{x[0][0]}-{x[0][1]}/{x[1]}"))
    star = st.one_of(st.just("*"), step.map(lambda n: f"*/{n}"))
    # croniter decides whether a day field is restricted by a "*" anywhere in its text, crontab
    # by the first character; they agree unless a "*" hides later in a list.
    later = st.one_of(star_free, star) if stars_in_lists else star_free
    not_star_led = st.tuples(star_free, st.lists(later, max_size=2)).map(lambda x: ",".join([x[0], *x[1]]))
    if placeholders:
        # Half the time, lead with a placeholder that each example fills in with a wall time
        # (or date) that its DST change skips or repeats: random fields rarely hit that hour.
        not_star_led = st.one_of(not_star_led, st.tuples(st.sampled_from(placeholders), st.lists(
            star_free, max_size=1)).map(lambda x: ",".join([x[0], *x[1]])))
    return _Field(
        star_led=st.tuples(star, st.lists(later, max_size=2 if stars_in_lists else 0)).map(
            lambda x: ",".join([x[0], *x[1]])),
        not_star_led=not_star_led,
    )


def _fields(*, for_croniter: bool) -> tuple[_Field, ...]:
    """second, minute, hour, day-of-month, month, day-of-week; built once (a strategy built inside
    a draw costs more than the comparison it feeds)."""
    loose = not for_croniter

    def placeholders(*names: str) -> tuple[str, ...]:
        return () if for_croniter else tuple(f"{{{name}}}" for name in names)

    return (
        _field(0, 59, one_value_ranges=loose),
        _field(0, 59, one_value_ranges=loose, placeholders=placeholders("m0", "m1")),
        _field(0, 23, one_value_ranges=loose, placeholders=placeholders("h0", "h1")),
        _field(1, 31, stars_in_lists=loose, one_value_ranges=loose, placeholders=placeholders("day")),
        _field(1, 12, _MONTHS, one_value_ranges=loose, placeholders=placeholders("month")),
        _field(0, 7, _DAYS, stars_in_lists=loose, one_value_ranges=loose, placeholders=placeholders("weekday")),
    )


_CRONIE_FIELDS, _CRONITER_FIELDS = _fields(for_croniter=False), _fields(for_croniter=True)


@st.composite
def expressions(draw: st.DrawFn, *, for_croniter: bool = False) -> str:
    """Crontab lines cronie accepts, as many fixed as wildcard, sometimes with seconds first."""
    second, minute, hour, dom, month, dow = _CRONITER_FIELDS if for_croniter else _CRONIE_FIELDS
    if not for_croniter and draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from(_MACROS))
    star_minute, star_hour = draw(st.sampled_from([(False, False), (True, False), (False, True), (True, True)]))
    star_minute, star_hour = (False, False) if draw(st.booleans()) else (star_minute, star_hour)
    every = st.just("*")
    five = [draw(minute.star_led if star_minute else minute.not_star_led),
            draw(hour.star_led if star_hour else hour.not_star_led),
            draw(st.one_of(every, dom.any)), draw(st.one_of(every, month.any)), draw(st.one_of(every, dow.any))]
    return " ".join([draw(second.any), *five] if draw(st.integers(0, 3)) == 0 else five)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, datetime]:
    """An expression, a zone and a start, mostly around a DST change, with the expression's
    placeholders set to times the change moves (in a gap, or repeated)."""
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    near = changes(zone)
    if near and draw(st.integers(0, 3)) > 0:
        change = draw(st.sampled_from(near))
        start = change + timedelta(minutes=draw(st.one_of(st.integers(-90, 90), st.integers(-60 * 30, 60 * 3))))
        # The wall times the change skips or repeats: [end of the old offset, start of the new).
        old = (change - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None) + timedelta(seconds=1)
        new = change.astimezone(tz).replace(tzinfo=None)
        low, size = min(old, new), abs(new - old)
        moved = [low + timedelta(minutes=draw(st.integers(0, int(size.total_seconds()) // 60 - 1)))
                 for _ in range(2)]
    else:
        start = datetime(2017, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 366 * 11)))
        moved = [datetime(2000, 1, 1) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 366))) for _ in range(2)]
    start += timedelta(seconds=draw(st.integers(0, 59)), microseconds=draw(st.sampled_from([0, 1, 500000])))
    expr = draw(expressions()).format(m0=moved[0].minute, m1=moved[1].minute, h0=moved[0].hour, h1=moved[1].hour,
                                      day=moved[0].day, month=moved[0].month, weekday=moved[0].isoweekday() % 7)
    return expr, zone, start


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_fire_times_equal_those_of_the_cronie_model(case: tuple[str, str, datetime]) -> None:
    expr, zone, start = case
    tz = ZoneInfo(zone)
    entry = cronie_ref.parse(expr)  # the strategy writes only what cronie accepts
    try:
        schedule = CronSchedule.parse(expr)
    except CronError:
        # We refuse only what never fires (30 February): cronie loads it, and never runs it in a
        # whole 400-year cycle of the calendar.
        assert cronie_ref.fires(entry, "UTC", start, 1, start + timedelta(days=146097 + 366)) == []
        return
    assert schedule.wildcard is entry.wild
    until = start + HORIZON
    model = cronie_ref.fires(entry, zone, start, N, until)
    ours: list[datetime] = []
    after = start
    while len(ours) < len(model):
        after = schedule.next_after(after, tz)
        ours.append(after.astimezone(UTC))
    assert ours == model, f"{expr!r} in {zone} from {start.astimezone(tz)}: first difference " + next(
        f"we fire at {o.astimezone(tz).isoformat()}, cronie at {m.astimezone(tz).isoformat()}"
        for o, m in zip(ours, model, strict=True) if o != m)
    if len(model) < N:  # the model found no more before ``until``: neither may we
        assert schedule.next_after(after, tz) > until


# -- the model's reading of the fields, against croniter where both are right ---------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions(for_croniter=True),
       start=st.integers(0, 60 * 24 * 366 * 10).map(lambda m: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=m)))
def test_the_cronie_model_reads_fields_as_croniter_does_in_utc(expr: str, start: datetime) -> None:
    # In UTC there is no DST, where croniter and cronie differ; croniter is then a third opinion
    # on the fields (ranges, steps, names, the day-of-month/day-of-week rule) that the model and
    # bot/cron.py might otherwise share a misreading of.
    until = start + HORIZON
    # implement_cron_bug: croniter's name for crontab's rule that a day field starting with "*"
    # is not restricted, so day-of-month and day-of-week are then ANDed.
    it = croniter(expr, start, second_at_beginning=len(expr.split()) == 6, implement_cron_bug=True,
                  max_years_between_matches=9)
    theirs: list[datetime] = []
    with contextlib.suppress(CroniterBadDateError):  # nothing within 9 years (e.g. 30 February)
        while len(theirs) < 20 and (t := it.get_next(datetime).astimezone(UTC)) <= until:
            theirs.append(t)
    assert cronie_ref.fires(cronie_ref.parse(expr), "UTC", start, 20, until) == theirs
