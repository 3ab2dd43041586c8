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
from typing import Any

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

# (jobs, instants, versions, grace, until) -> rows (job, scheduled_for, waiting)
Watch = Callable[[list[str], list[datetime], list[int], timedelta, datetime], Awaitable[list[Any]]]
# The database went away under the wait: the fires from this instant on were not checked.
Unreachable = Callable[[datetime], None]


class Standby:
    def __init__(self, scheduler: Scheduler, watch: Watch, unreachable: Unreachable,
                 connections: Callable[[], int]) -> None:
        self._scheduler = scheduler
        self._watch = watch
        self._unreachable = unreachable
        self._connections = connections  # how many pooled connections may be out at once now
        # Too few for one to wait here (DATABASE_POOL_SIZE under 3, or the server refusing more): no
        # standing by, and every replica tries every fire instead (FireExecutor.owns), as in an outage.
        self.unable = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        scheduler.on_change = self._changed.set

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="standby")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        # The first instant not yet covered (exclusive), and fires still held up by a run in progress.
        # From now: a fire before this replica started firing is the start-up's catch-up's business.
        started: datetime = datetime.now(UTC)
        after: datetime | None = started
        held: list[tuple[str, datetime, int]] = []
        while True:
            self._changed.clear()
            if self._connections() < MIN_CONNECTIONS and not self._scheduler.alone():
                if not self.unable:
                    log.warning("too few database connections to stand by for the other replicas' fires (%d, "
                                "fewer than %d): this replica tries every fire itself", self._connections(),
                                MIN_CONNECTIONS)
                self.unable, after, held = True, None, []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 5.0)
                continue
            if self.unable:
                self.unable = False
                log.info("enough database connections again: standing by for the other replicas' fires")
            now = datetime.now(UTC)
            if after is None:
                after = max(now - LOOKBACK, started)
            drawn = self._scheduler.others_fires(after, now + WINDOW, MOST)
            if drawn is None:  # alone, or the database out (every fire is tried here): nothing to stand by for
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 1.0)
                after, held = None, []
                continue
            fires, end = drawn
            before = set(held)
            new = [fire for fire in fires if fire not in before]  # drawn now, not held up before
            fires = sorted({*held, *new}, key=lambda fire: (fire[1], fire[0]))  # by instant, as the statement wants
            if not fires:  # nothing of the others' due within the window
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), (end - now).total_seconds())
                after = None if self._changed.is_set() else end
                continue
            waiting_since = datetime.now(UTC)
            try:
                rows = await self._wait(fires, end + GRACE)
            except Exception as exc:  # whatever it is, standing by must go on
                lost = isinstance(exc, (DatabaseUnavailable, TimeoutError, *CONNECTION_ERRORS))
                if lost:
                    # Fires missed while the database is out are the outage's (bot.watch), not a
                    # standby's: every fire is tried here until a run is recorded again, and the
                    # fires this wait had not checked yet are counted with the outage's. (Checked:
                    # those whose grace ended while it went on — an overdue one returns at once —
                    # but the ones held up by a run in progress, which their owner has.)
                    checked_until = max(waiting_since, datetime.now(UTC) - timedelta(seconds=1))
                    unchecked = [at for _, at, _ in new if at + GRACE > checked_until]
                    self._unreachable(min(unchecked, default=checked_until))
                    log.warning("standing by for the other replicas' fires: %s; again in 2 s", exc)
                else:
                    log.error("standing by for the other replicas' fires failed; again in 2 s", exc_info=exc)
                await asyncio.sleep(2)
                after, held = datetime.now(UTC), []
                continue
            if rows is None:  # a change: the next window on the new terms
                after, held = None, []
                continue
            overdue = [row for row in rows if not row["waiting"]]
            versions = {(job, at): version for job, at, version in fires}
            held = [(row["job"], row["scheduled_for"], versions[row["job"], row["scheduled_for"]])
                    for row in rows if row["waiting"]]
            after = max(row["scheduled_for"] for row in overdue) if overdue else end
            for row in overdue:
                log.warning("fire of %s for %s taken over: unclaimed %.1f s after its instant (its replica is "
                            "down or frozen)", row["job"], row["scheduled_for"].isoformat(),
                            GRACE.total_seconds(),
                            extra={"job": row["job"], "trigger": "schedule", "status": "taken-over",
                                   "scheduled_for": row["scheduled_for"].isoformat()})
                self._scheduler.take_over(row["job"], row["scheduled_for"])

    async def _wait(self, fires: list[tuple[str, datetime, int]], until: datetime) -> list[Any] | None:
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
