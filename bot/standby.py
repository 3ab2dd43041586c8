"""Standing by for the other replicas' fires: one owner per fire, and a late fire is taken over.

Each fire has one owner among the replicas up (bot.scheduler.owner): it alone claims and runs
the fire, so the database does the work of a fire once however many replicas there are. The
others stand by: a fire its owner has not claimed ``GRACE`` (2.5 s) after its instant — the owner died, or
froze, or counts the replicas differently for a moment — is run by a standby, through the same
claim (which stays the exactly-once guarantee: two standbys that both take a fire over run it
once).

Standing by costs no transaction per fire. A replica hands the database the fires it stands by
for, a window of them at once (up to ``WINDOW`` ahead, about ``MOST`` fires), in one statement
that waits on the server (``foojob_standby``, migration 010): it checks each fire when its grace
is over and returns as soon as one is overdue, or at the window's end. One statement is one
transaction, however long it waits; a NOTIFY per claim would cost every listening replica one
(PostgreSQL reads a notification in a transaction of its own: measured, 20 NOTIFYs to one
listener made 44 transactions). A change — the replicas up, a schedule re-armed — cancels the
statement, and the next window is drawn on the new terms.

The statement holds one of the pool's connections while it waits, and its snapshot for as long
(a window: a minute at most, the same as a query that long; VACUUM keeps what it sees that long).
A replica alone stands by for nobody: it holds no connection for it. Nor does one whose pool is
too small to spare it (``MIN_CONNECTIONS``: ``DATABASE_POOL_SIZE`` under 3, or the server refusing
more connections for its limit, which cancels the statement at once): every replica then tries
every fire, as they do while the database is out, and the claim keeps each to one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from bot.db import CONNECTION_ERRORS
from bot.errors import DatabaseUnavailable
from bot.scheduler import Scheduler

log = logging.getLogger(__name__)

# A fire its owner has not claimed this long after its instant is taken over. Two seconds, and half
# of one: the checks come between the fires of a job due every second, not on top of them.
GRACE = timedelta(seconds=2.5)
WINDOW = timedelta(seconds=60)  # fires covered by one statement, ahead of now
MOST = 2000  # fires in one statement, about: many jobs make a shorter window
# The statement holds a pooled connection: only when the pool leaves two more to the fires.
MIN_CONNECTIONS = 3
LOOKBACK = timedelta(seconds=3)  # a window drawn anew covers fires this recent too (one whose grace ends now)

Fire = tuple[str, datetime, int]  # (job, instant in UTC, schedule version)
# (jobs, instants, versions, grace, until) -> rows (job, scheduled_for, status: overdue, missed or held)
Watch = Callable[[list[str], list[datetime], list[int], timedelta, datetime], Awaitable[list[Any]]]
# The database went away under the wait: the fires from this instant on were not checked.
Unreachable = Callable[[datetime], None]


class Missed(Protocol):
    """Watcher.missed: fires to report missed, once across replicas."""

    def __call__(self, job: str, instants: list[datetime], reason: str, *, at_once: bool = False) -> None: ...


class Standby:
    def __init__(self, scheduler: Scheduler, watch: Watch, unreachable: Unreachable,
                 connections: Callable[[], int], missed: Missed) -> None:
        self._scheduler = scheduler
        self._watch = watch
        self._unreachable = unreachable
        self._missed = missed  # reported once across replicas, if no run took it (bot.watch)
        self._connections = connections  # how many pooled connections may be out at once now
        # Too few for one to wait here (DATABASE_POOL_SIZE under 3, or the server refusing more): no
        # standing by, and every replica tries every fire instead (FireExecutor.owns), as in an outage.
        self.unable = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        scheduler.on_change = self._changed.set

    def redraw(self) -> None:
        """Something this replica stands by on changed (the server refused a connection): the
        window in progress is cut short and drawn again."""
        self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="standby")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        # The first instant not yet covered (exclusive), and fires still held up by a run in progress.
        # From now: a fire before this replica started firing is the start-up's catch-up's business.
        self._started = datetime.now(UTC)
        self._after: datetime | None = self._started
        self._held: list[Fire] = []
        self._cancelled: list[Fire] = []  # the fires of a window a change cut short
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end standing by (the others' fires would be nobody's)
                log.exception("standing by for the other replicas' fires failed; again in 2 s")
                self._after, self._held = None, []
                await asyncio.sleep(2)

    async def _step(self) -> None:
        self._changed.clear()
        if self._connections() < MIN_CONNECTIONS and not self._scheduler.alone():
            if not self.unable:
                log.warning("too few database connections to stand by for the other replicas' fires (%d, "
                            "fewer than %d): this replica tries every fire itself", self._connections(),
                            MIN_CONNECTIONS)
            self.unable, self._after, self._held = True, None, []
            self._rescue()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 5.0)
            return
        if self.unable:
            self.unable = False
            log.info("enough database connections again: standing by for the other replicas' fires")
        self._rescue()
        now = datetime.now(UTC)
        if self._after is None:
            self._after = max(now - LOOKBACK, self._started)
        drawn = self._scheduler.others_fires(self._after, now + WINDOW, MOST)
        if drawn is None:  # alone, or the database out (every fire is tried here): nothing to stand by for
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
            self._after, self._held = None, []
            return
        drawn_fires, end = drawn
        before = set(self._held)
        new = [fire for fire in drawn_fires if fire not in before]  # drawn now, not held up before
        fires = sorted({*self._held, *new}, key=lambda fire: (fire[1], fire[0]))  # by instant, as the statement wants
        if not fires:  # nothing of the others' due within the window
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), (end - now).total_seconds())
            self._after = None if self._changed.is_set() else end
            return
        waiting_since = datetime.now(UTC)
        try:
            rows = await self._wait(fires, end + GRACE)
        except Exception as exc:
            if isinstance(exc, (DatabaseUnavailable, TimeoutError, *CONNECTION_ERRORS)) \
                    and not isinstance(exc, asyncpg.QueryCanceledError):  # an admin's cancel is not an outage
                # Fires missed while the database is out are the outage's (bot.watch), not a
                # standby's: every fire is tried here until a run is recorded again, and the fires
                # this wait had not checked yet are counted with the outage's. (Checked: those whose
                # grace ended while it went on — an overdue one returns at once — but the ones held
                # up by a run in progress: that run went with the database; make chaos, seed 931326542.)
                checked_until = max(waiting_since, datetime.now(UTC) - timedelta(seconds=1))
                unchecked = [at for _, at, _ in self._held] + \
                            [at for _, at, _ in new if at + GRACE > checked_until]
                self._unreachable(min(unchecked, default=checked_until))
                log.warning("standing by for the other replicas' fires: %s; again in 2 s", exc)
                self._after, self._held = datetime.now(UTC), []
            else:
                log.error("standing by for the other replicas' fires failed; again in 2 s", exc_info=exc)
                self._after = None  # the window again, from a moment ago
            await asyncio.sleep(2)
            return
        if rows is None:  # a change: the next window on the new terms (fires held up are kept)
            self._after, self._cancelled = None, fires
            return
        due = [row for row in rows if row["status"] != "held"]
        overdue = [row for row in due if row["status"] == "overdue"]
        versions = {(job, at): version for job, at, version in fires}
        self._held = [(row["job"], row["scheduled_for"], versions[row["job"], row["scheduled_for"]])
                      for row in rows if row["status"] == "held" and (row["job"], row["scheduled_for"]) in versions]
        self._after = max(row["scheduled_for"] for row in due) if due else end
        for row in due:
            if row["status"] == "missed":  # its owner did not run it, and now it must not run: told
                self._missed(row["job"], [row["scheduled_for"]],
                             "its replica was down or frozen, and the job was paused or its schedule changed "
                             "before another replica could run it", at_once=True)
        for row in overdue:
            self._take_over(row["job"], row["scheduled_for"], logging.WARNING, f"unclaimed {GRACE.total_seconds():.1f} "
                            "s after its instant (its replica is down or frozen)")

    def _rescue(self) -> None:
        """After a change cut a window short: its fires still in their grace that this replica now
        runs itself (alone now, every fire tried here, or its own by the new count) were dropped
        at their instants as another's — run them now (the claim keeps each to one run)."""
        cancelled, self._cancelled = self._cancelled, []
        now = datetime.now(UTC)
        for job, at, _ in cancelled:
            if now - GRACE - timedelta(seconds=1) < at <= now and self._scheduler.runs_itself(job):
                self._take_over(job, at, logging.INFO, "the replicas up changed during its grace")

    def _take_over(self, job: str, at: datetime, level: int, why: str) -> None:
        # Every standby that saw it says so; the first to claim it runs it (the run's own line says which).
        log.log(level, "fire of %s for %s taken over (if no other standby claims it first): %s", job,
                at.isoformat(), why,
                extra={"job": job, "trigger": "schedule", "status": "taken-over", "scheduled_for": at.isoformat()})
        self._scheduler.take_over(job, at)

    async def _wait(self, fires: list[Fire], until: datetime) -> list[Any] | None:
        """The watch statement's rows, or None when a change came first (the statement cancelled)."""
        jobs, instants, versions = (list(column) for column in zip(*fires, strict=True))
        watching = asyncio.ensure_future(self._watch(jobs, instants, versions, GRACE, until))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({watching, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            if not watching.done():
                watching.cancel()  # asyncpg asks the server to cancel the statement
            await asyncio.gather(changed, watching, return_exceptions=True)
        if watching.cancelled():
            return None
        return watching.result()
