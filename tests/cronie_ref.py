"""A model of cronie, the reference for ``bot/cron.py``: its crontab parser and its main loop.

Written from cronie's sources (https://github.com/cronie-crond/cronie: src/cron.c at commit
2f759ba, src/entry.c at 4cd4d2e, src/job.c at 043670b, src/globals.h), independently of
``bot/cron.py``, which searches wall-clock time forwards and maps each match to instants. This
module instead lets real time pass, in UTC, and does what cronie's daemon does at each wake-up:

* ``parse`` follows ``src/entry.c``: ``load_entry`` (the ``@`` macros, compared with ``strcmp``,
  so ``@Daily`` is refused; the ``MIN_STAR``/``HR_STAR``/``DOM_STAR``/``DOW_STAR`` flags, set when
  a field's first character is ``*``), ``get_list``, ``get_range`` (``*``, ``a``, ``a-b``, a step
  only after ``*`` or ``a-b``, so ``5/20`` is refused) and ``get_number`` (names of three letters,
  any case). cronie has no seconds field; a sixth field first is read as a minute field would be.
  One rule comes from cronie's current ``get_range`` instead (PR #200, merged March 2025, after
  4cd4d2e): a range whose high end is 0 and higher low end, with no step after it, ends in 7
  (``if (low_ > high_ && high_ == 0) high_ = 7;`` in state ``R_RANGE_NUM2``, before the ``/``
  test), so ``SAT-SUN`` and ``5-0`` are 6-7 and 5-7. Like the C code, it does not look at the
  field (hours ``5-0`` are 5-7 too). Other backwards ranges are refused here, as at 4cd4d2e; the
  current source loads them, setting nothing. Neither kind is written by the tests' strategies.
* ``fires`` follows ``src/cron.c``: ``set_time`` (``clockTime = (now + GMToff) / 60``, minutes
  since the epoch in wall-clock terms), the main loop's four cases on ``timeDiff = timeRunning -
  virtualTime`` (1: the common case; 2..5: woke up late, run every missed minute; 6..180: "DST
  begins", wildcard jobs for the current minute, fixed jobs for every missed virtual minute; <= 0:
  "DST ends", wildcard jobs only, virtual time waits; beyond 3 hours: the clock jumped) and
  ``find_jobs`` (the matching test, and ``doWild``/``doNonWild`` against ``MIN_STAR | HR_STAR``).
  With a seconds field the loop's unit is a second instead of a minute; its thresholds keep their
  durations (5 minutes, 3 hours).

Not modelled, as they do not decide *when* a job is due: ``CRON_TZ``, ``RANDOM_DELAY``, the time
jobs take (cronie sleeps 10 s after each queue that ran, so with many jobs it may finish the missed
minutes at a later wake-up), and the queue being run before each missed minute of the "DST
begins" loop: a fire is an instant, so all that is due at one wake-up is one fire. Nor that
``set_time`` re-reads the offset only when ``tm_isdst`` flips: here every offset change counts
(they are all DST changes in the zones and years the tests use).

Wake-ups where provably nothing happens (the common case, away from offset changes, in a minute
no field matches, or before the instant asked about) are skipped in whole months, days, hours and
minutes; that is the only shortcut.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DOW_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]  # globals.h: 7 is Sunday too
_EPOCH = date(1970, 1, 1).toordinal()


class Refused(ValueError):
    """cronie would not load this line (``load_entry`` returns NULL)."""


@dataclass(frozen=True)
class Entry:
    unit: int  # seconds between wake-ups: 60, or 1 with a seconds field
    second: frozenset[int]
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool
    wild: bool  # MIN_STAR | HR_STAR

    def day_matches(self, days: int) -> bool:
        """The day part of ``find_jobs``'s test, for day number ``days`` since the epoch."""
        day = date.fromordinal(_EPOCH + days)
        dow = (days + 4) % 7  # 1970-01-01 was a Thursday; tm_wday counts from Sunday = 0
        in_dom, in_dow = day.day in self.dom, dow in self.dow
        # "the dom/dow situation is odd ... yes, it's bizarre. like many bizarre things, it's the standard."
        if self.dom_star or self.dow_star:
            return day.month in self.month and in_dow and in_dom
        return day.month in self.month and (in_dow or in_dom)

    def matches(self, local: int) -> bool:
        """``find_jobs``'s test, for the wall-clock time ``local`` (seconds since the epoch, as
        cronie's ``virtualSecond`` read with ``gmtime``)."""
        days, of_day = divmod(local, 86400)
        hour, rest = divmod(of_day, 3600)
        minute, second = divmod(rest, 60)
        return (second in self.second and minute in self.minute and hour in self.hour
                and self.day_matches(days))


# -- src/entry.c ---------------------------------------------------------------------------------

class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text + " "  # the blank that ends a field in a crontab line
        self.pos = 0

    def ch(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else "\n"

    def get_char(self) -> str:
        self.pos += 1
        return self.ch()


def _get_number(r: _Reader, low: int, names: list[str] | None, terms: str) -> int:
    start = r.pos
    while r.ch().isdigit():
        r.get_char()
    if r.pos > start:
        if r.ch() not in terms:
            raise Refused(f"{r.text!r}: bad terminator {r.ch()!r}")
        return int(r.text[start:r.pos])
    if names:
        while r.ch().isalpha():
            r.get_char()
        word = r.text[start:r.pos]
        if word and r.ch() in terms:
            for i, name in enumerate(names):
                if name.lower() == word.lower():  # strcasecmp
                    return i + low
    raise Refused(f"{r.text!r}: bad number")


def _get_range(r: _Reader, bits: set[int], low: int, high: int, names: list[str] | None) -> None:
    def set_element(number: int) -> None:
        if not low <= number <= high:
            raise Refused(f"{r.text!r}: {number} out of {low}-{high}")
        bits.add(number)

    if r.ch() == "*":
        num1, num2 = low, high
        r.get_char()
    else:
        num1 = _get_number(r, low, names, ",- \t\n")
        if r.ch() != "-":
            set_element(num1)  # a single number: no step may follow (terminators above)
            return
        r.get_char()
        num2 = _get_number(r, low, names, "/, \t\n")
        if num1 > num2 and num2 == 0 and r.ch() != "/":
            num2 = 7  # cronie's current R_RANGE_NUM2 (PR #200): SAT-SUN is 6-7; not before a step
        if num1 > num2:
            raise Refused(f"{r.text!r}: {num1}-{num2} runs backwards")
    num3 = 1
    if r.ch() == "/":
        r.get_char()
        num3 = _get_number(r, 0, None, ", \t\n")
        if num3 == 0:
            raise Refused(f"{r.text!r}: step 0")
    for i in range(num1, num2 + 1, num3):
        set_element(i)


def _get_list(text: str, low: int, high: int, names: list[str] | None = None) -> frozenset[int]:
    r = _Reader(text)
    bits: set[int] = set()
    while True:
        _get_range(r, bits, low, high, names)
        if r.ch() != ",":
            break
        r.get_char()
    # get_list then skips to the next blank (Skip_Nonblanks): trailing text is ignored, as in cronie.
    return frozenset(bits)


_ALL_DOM, _ALL_MONTH, _ALL_DOW = frozenset(range(1, 32)), frozenset(range(1, 13)), frozenset(range(8))
_MACROS = {  # load_entry: (minute, hour, dom, month, dow, flags)
    "yearly": ({0}, {0}, {1}, {1}, _ALL_DOW, "DOW_STAR"),
    "annually": ({0}, {0}, {1}, {1}, _ALL_DOW, "DOW_STAR"),
    "monthly": ({0}, {0}, {1}, _ALL_MONTH, _ALL_DOW, "DOW_STAR"),
    "weekly": ({0}, {0}, _ALL_DOM, _ALL_MONTH, {0}, "DOW_STAR"),
    "daily": ({0}, {0}, _ALL_DOM, _ALL_MONTH, _ALL_DOW, ""),
    "midnight": ({0}, {0}, _ALL_DOM, _ALL_MONTH, _ALL_DOW, ""),
    "hourly": ({0}, frozenset(range(24)), _ALL_DOM, _ALL_MONTH, _ALL_DOW, "HR_STAR"),
}


def parse(text: str) -> Entry:
    """The entry cronie's ``load_entry`` builds from the time fields of a crontab line."""
    text = text.strip()
    if text.startswith("@"):
        if text[1:] not in _MACROS:  # strcmp: case matters
            raise Refused(f"bad time specifier {text!r}")
        minute, hour, dom, month, dow, flag = _MACROS[text[1:]]
        return Entry(60, frozenset({0}), frozenset(minute), frozenset(hour), frozenset(dom),
                     frozenset(month), frozenset(dow) | ({0, 7} if {0, 7} & set(dow) else set()),
                     dom_star=False, dow_star=flag == "DOW_STAR", wild=flag == "HR_STAR")
    fields = text.split()
    if len(fields) not in (5, 6):
        raise Refused(f"{len(fields)} fields")
    second = _get_list(fields.pop(0), 0, 59) if len(fields) == 6 else frozenset({0})
    minute, hour, dom, month, dow = fields
    dow_bits = _get_list(dow, 0, 7, DOW_NAMES)
    if 0 in dow_bits or 7 in dow_bits:  # "make sundays equivalent"
        dow_bits |= {0, 7}
    return Entry(
        unit=1 if len(text.split()) == 6 else 60,
        second=second,
        minute=_get_list(minute, 0, 59),
        hour=_get_list(hour, 0, 23),
        dom=_get_list(dom, 1, 31),
        month=_get_list(month, 1, 12, MONTH_NAMES),
        dow=dow_bits,
        dom_star=dom.startswith("*"),
        dow_star=dow.startswith("*"),
        wild=minute.startswith("*") or hour.startswith("*"),
    )


# -- the zone: what set_time's localtime() says ---------------------------------------------------

def _offset(zone: ZoneInfo, t: int) -> int:
    offset = datetime.fromtimestamp(t, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


@functools.cache
def _changes_in_year(key: str, year: int) -> tuple[int, ...]:
    """The instants (UTC seconds) of ``year`` at which the zone's offset changes, to the second.

    Found by looking once a day and bisecting: no zone changes its offset twice within a day."""
    zone = ZoneInfo(key)
    if key == "UTC":
        return ()
    t, end = int(datetime(year, 1, 1, tzinfo=UTC).timestamp()), int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found = []
    previous = _offset(zone, t)
    while t < end:
        nxt = min(t + 86400, end)
        if _offset(zone, nxt) != previous:
            low, high = t, nxt
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == previous:
                    low = middle
                else:
                    high = middle
            found.append(high)
            previous = _offset(zone, nxt)
        t = nxt
    return tuple(found)


def _next_change(key: str, t: int) -> int:
    """The first offset change after ``t``; without one in two years, a harmless stand-in."""
    year = datetime.fromtimestamp(t, UTC).year
    for y in (year, year + 1):
        changes = _changes_in_year(key, y)
        i = bisect.bisect_right(changes, t)
        if i < len(changes):
            return changes[i]
    return int(datetime(year + 2, 1, 1, tzinfo=UTC).timestamp())


def _next_match(entry: Entry, local: int, end: int) -> int | None:
    """The first wall time in ``[local, end)`` (whole units) that ``entry`` matches, or None."""
    while local < end:
        days, of_day = divmod(local, 86400)
        hour, rest = divmod(of_day, 3600)
        minute, second = divmod(rest, 60)
        if not entry.day_matches(days):
            day = date.fromordinal(_EPOCH + days)
            if day.month not in entry.month:
                local = (date(day.year + day.month // 12, day.month % 12 + 1, 1).toordinal() - _EPOCH) * 86400
            else:
                local = (days + 1) * 86400
        elif hour not in entry.hour:
            local = days * 86400 + (hour + 1) * 3600
        elif minute not in entry.minute:
            local = days * 86400 + hour * 3600 + (minute + 1) * 60
        elif second not in entry.second:
            local += entry.unit
        else:
            return local
    return None


# -- src/cron.c: main() ---------------------------------------------------------------------------

def fires(entry: Entry, key: str, after: datetime, count: int, until: datetime) -> list[datetime]:
    """The first ``count`` instants after ``after`` (and not after ``until``) at which cronie,
    running in zone ``key`` since well before ``after``, starts the job of ``entry``."""
    zone = ZoneInfo(key)
    unit = entry.unit
    small, large = 5 * 60 // unit, 3 * 60 * 60 // unit  # cron.c: timeDiff > 5, > 3 * MINUTE_COUNT
    after_ts, until_ts = after.timestamp(), until.timestamp()
    out: list[int] = []

    def find_jobs(vtime: int, do_wild: bool, do_non_wild: bool, now: int) -> None:
        due = ((do_non_wild and not entry.wild) or (do_wild and entry.wild)) and entry.matches(vtime * unit)
        if due and after_ts < now <= until_ts and (not out or out[-1] != now):
            out.append(now)  # job_add: a job is queued once per wake-up

    # Start a day early, where no offset change is in the way, so that virtualTime has settled.
    t = (int(after_ts) - 86400) // unit * unit
    while _next_change(key, t - 4 * 3600) <= t:
        t -= 86400
    assert _offset(zone, t) % 60 == 0, "wall minutes must start on UTC minutes"
    time_running = virtual_time = (t + _offset(zone, t)) // unit

    while len(out) < count and t <= until_ts:
        change = _next_change(key, t)
        if virtual_time == time_running and t + unit < change:
            # Until ``change`` every wake-up is the common case (timeDiff == 1), which runs the
            # jobs of that minute: go straight to the next minute that has any (and that counts:
            # the ones before ``after`` change nothing).
            offset = _offset(zone, t + unit)
            first = max(t + unit, -(-int(after_ts) // unit) * unit)
            hit = _next_match(entry, first + offset, change + offset)
            t = change - unit if hit is None else hit - offset
            time_running = virtual_time = (t + offset) // unit
            if hit is not None:
                find_jobs(virtual_time, True, True, t)
            continue
        # One wake-up, as in cron.c, at the start of the next unit of real time.
        t += unit
        clock_time = (t + _offset(zone, t)) // unit  # set_time()
        if clock_time == time_running:  # "wait for the time (in minutes) to change"
            continue
        time_running = clock_time
        time_diff = time_running - virtual_time
        if time_diff == 1:  # shortcut for the most common case
            virtual_time = time_running
            find_jobs(virtual_time, True, True, t)
        elif time_diff > large or time_diff < -large:  # clock jumped: run everything
            virtual_time = time_running
            find_jobs(time_running, True, True, t)
        elif time_diff > small:  # DST begins
            find_jobs(time_running, True, False, t)  # wildcard jobs for the current minute
            while virtual_time < time_running:  # fixed-time jobs for each minute missed
                virtual_time += 1
                find_jobs(virtual_time, False, True, t)
        elif time_diff > 0:  # woke up late: every missed minute, all jobs
            while virtual_time < time_running:
                virtual_time += 1
                find_jobs(virtual_time, True, True, t)
        else:  # DST ends: wildcard jobs only; virtual time waits for the clock to catch up
            find_jobs(time_running, True, False, t)
    return [datetime.fromtimestamp(x, UTC) for x in out]
