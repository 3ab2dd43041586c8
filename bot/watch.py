"""The bot watches its own job: it says, once, when a fire did not run, and when the database is
gone and back.

* **Missed fires while up.** The scheduler and the runner tell the watcher of each fire this
  process did not run: given up after waiting for a run in progress, too late (the service was
  stalled), or superseded while a run was still going. At ``FOOJOB_LATE_AFTER`` past the instant
  (and after this process's own verdict) the watcher claims the report in the database — only if
  no replica ran that fire, none is running it, and the job is neither paused nor skipping it —
  so each missed fire is reported once across replicas, with its reason.
* **Outages told once.** When a run cannot reach the database, one message straight to the
  webhook (the outbox cannot be written) — not one per fire, and none while the job is known to
  be paused. The replicas cannot agree during an outage, so they agree beforehand: only the
  replica that the last heartbeat named speaker (the first by name of those up) says it. The
  direct message cannot keep its place in the outbox's order (it exists because the outbox cannot
  be written). When the database answers again, the fires no replica ran meanwhile are claimed
  in the database, each once across replicas, and whichever replica claims them says so through
  the outbox, in order: how long it was gone, how many fires were missed.

What it does not do: decide whether a fire runs (the runner does, in the database), or report the
time when no replica was up (the start-up does, in ``bot.app.catch_up``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.control import Control
from bot.errors import DatabaseUnavailable
from bot.messages import back_message, missed_message, outage_message
from bot.metrics import Metrics
from bot.model import JobState, Trigger
from bot.notify import Message, Notifier
from bot.tasks import Tasks

log = logging.getLogger(__name__)

# A report waits at least this long after this process's own verdict: the other replicas, which
# waited for the same run in progress, have reached theirs by then.
SETTLE_S = 1.0
MAX_COUNTED = 100_000  # fires counted after an outage or a stall, at most


class Watcher:
    def __init__(self, control: Control, notifier: Notifier, timezone: ZoneInfo, late_after: timedelta,
                 metrics: Metrics | None = None) -> None:
        self._control = control
        self._notifier = notifier
        self._tz = timezone
        self._late_after = late_after
        self._metrics = metrics
        self._tasks = Tasks()
        self._paused: dict[str, bool] = {}
        # Whether this replica speaks during an outage (the last heartbeat says; alone, it does).
        self.speaker = True
        self._outage_since: datetime | None = None
        # The fires missed in an outage are counted from here: its start, or earlier when a standby
        # lost the database with fires of other replicas not yet checked (bot.standby).
        self._missed_from: datetime | None = None
        self._outage_told = False

    # -- what the scheduler and the runner say ----------------------------------------------

    def state_changed(self, state: JobState) -> None:
        self._paused[state.job] = state.paused

    def missed(self, job: str, instants: list[datetime], reason: str, *, at_once: bool = False) -> None:
        """Fires of ``job`` this process did not run; reported if no replica did — once they are
        FOOJOB_LATE_AFTER late, or ``at_once`` (known missed for good: nothing may run them now)."""
        if instants:
            self._tasks.spawn(self._report(job, sorted(instants), reason, at_once))

    def unreachable(self, job: str, trigger: Trigger, scheduled_for: datetime | None, error: str) -> None:
        if self._outage_since is None:
            self._outage_since = scheduled_for or datetime.now(UTC)
            log.error("the database is unreachable (%s): runs fail until it is back; said once", error)
        if self._outage_told or trigger == "manual" or self._paused.get(job, False):
            return  # the caller of a manual run gets the error; a paused job reports nothing
        self._outage_told = True
        if self.speaker:
            self._notifier.publish_now(outage_message([job], self._outage_since, error, self._tz))

    @property
    def outage(self) -> bool:
        """Whether this replica finds the database unreachable (until a run is recorded again)."""
        return self._outage_since is not None

    def suspect(self, unchecked_from: datetime) -> None:
        """The database went away under a standby's wait (bot.standby), whose fires from
        ``unchecked_from`` on were not checked yet: those are counted with the outage's. From now
        on every fire is tried here, so that the outage is told and counted as before."""
        if self._outage_since is None:
            self._outage_since = datetime.now(UTC)
        self._missed_from = min(self._missed_from or unchecked_from, unchecked_from)

    def reachable(self) -> None:
        if self._outage_since is not None:
            since, told, missed_from = self._outage_since, self._outage_told, self._missed_from
            self._outage_since, self._outage_told, self._missed_from = None, False, None
            self._tasks.spawn(self._back(since, told, missed_from))

    # -- reports ----------------------------------------------------------------------------

    async def _report(self, job: str, instants: list[datetime], reason: str, at_once: bool = False) -> None:
        due = instants[-1] + (timedelta(0) if at_once else self._late_after)
        wait = max((due - datetime.now(UTC)).total_seconds(), SETTLE_S)
        await asyncio.sleep(wait)
        if len(instants) == 1:
            message = missed_message(job, instants[0], reason, self._tz)
        else:
            message = missed_message(job, instants[0], f"{reason}; {len(instants)} fires missed, up to "
                                     f"{instants[-1].astimezone(self._tz).strftime('%H:%M:%S')}", self._tz)
        try:
            claimed = await self._control.report_missed(job, instants, reason, message)
        except DatabaseUnavailable:
            return  # counted when the database is back
        if claimed:
            log.warning("%s missed %d fire(s) from %s: %s", job, len(instants), instants[0].isoformat(), reason,
                        extra={"job": job, "trigger": "schedule", "status": "missed",
                               "scheduled_for": instants[0].isoformat()})
            if self._metrics is not None:
                self._metrics.missed_fires.labels(job).inc(len(instants))

    async def _back(self, since: datetime, told: bool, missed_from: datetime | None = None) -> None:
        """The database answers again: the fires no replica ran meanwhile are claimed, each once
        across replicas (``foojob_missed``, reason ``outage``), and the replica that claims them
        says so, in the same transaction — whichever replica that is: the one that told the outage
        may have died since. A replica that told the outage and finds no fire missed at all says
        that instead."""
        until = datetime.now(UTC)

        def message(claimed: dict[str, int], missed_any: bool) -> Message | None:
            if any(claimed.values()):
                return back_message(since, until, {job: n for job, n in claimed.items() if n}, self._tz)
            quiet = told and self.speaker and not missed_any
            return back_message(since, until, {}, self._tz) if quiet else None

        counted_from = min(since, missed_from or since)
        try:
            claimed = await self._control.claim_outage(counted_from - timedelta(seconds=1), until, MAX_COUNTED, message)
        except DatabaseUnavailable:
            self._outage_since, self._outage_told = since, told  # not back after all
            self._missed_from = min(self._missed_from or counted_from, counted_from)
            return
        log.warning("the database is back after %.0f s; fires missed meanwhile, reported here: %s",
                    (until - since).total_seconds(), claimed)
        if self._metrics is not None:  # each fire counted once across replicas, like its report
            for job, count in claimed.items():
                self._metrics.missed_fires.labels(job).inc(count)

    async def close(self) -> None:
        await self._tasks.cancel()
