"""APScheduler 3 glue: each fire of a job's cron becomes ``runner.run(job, scheduled_for=…)``.

The schedule each job follows is the effective one from the database (``bot.schedules``): every
replica re-arms its trigger when it hears of a change (NOTIFY, within moments), and a fire carries
the version of the schedule it was armed with, so that the run itself can refuse an instant the
database no longer schedules (a fire that was waiting while the schedule changed).

What we take from APScheduler is the clock: it computes fire times from our trigger and wakes up
on time. What we do not take from it, on purpose (DESIGN.md, "Known traps"):

* pausing — ``pause_job``/``resume_job`` live in memory, are lost on restart and skip missed
  fires; pause state lives in PostgreSQL and is checked by the run itself at fire time;
* its executor — ``AsyncIOExecutor`` does not pass the scheduled instant to the job (we need it to
  claim the fire) and *cancels* running coroutines on shutdown; :class:`FireExecutor` passes the
  instant and lets the run in progress finish while the service stops.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bot.cron import CronTrigger
from bot.errors import DatabaseUnavailable
from bot.model import JobState
from bot.schedules import Schedule

log = logging.getLogger(__name__)

# (job, instant, schedule version)
FireHandler = Callable[[str, datetime, int], Awaitable[Any]]
MissedHandler = Callable[[str, list[datetime], str], None]

# A fire more than this late (the event loop was blocked, the machine slept) is skipped rather
# than run at the wrong time; catching up after downtime is the start-up's business.
MISFIRE_GRACE = timedelta(seconds=30)


def owner(position: int, replicas: int) -> int:
    """The rank (from 0, among the ``replicas`` up, by name: the heartbeat says) of the replica
    that owns the fires of the job at ``position`` among the jobs by name. Round the replicas: the
    jobs spread evenly (50 jobs on 3 replicas: 17, 17 and 16), and a job stays with one replica
    while the replicas up stay the same (its connection is warm). Every replica computes the same
    from the same count and the same jobs. (Two that count differently for a moment — a replica
    starting, or a deploy adding a job — may both run a fire, which the claim keeps to one run, or
    neither: a standby runs it, bot.standby.GRACE late.)"""
    return position % replicas if replicas > 1 else 0


class FireExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs each fire as an asyncio task, passing the scheduled instant, and never cancels it.

    One fire of a job at a time in this process. A fire that comes while the previous one is
    still going (a long run, or a wait for another replica's run) is kept, and runs when it ends;
    if several come meanwhile, only the latest is kept (coalesced). So a job that overruns its
    interval runs again as soon as it can, once, never twice at once. (APScheduler's own
    ``max_instances`` would drop those fires instead: this executor takes over that rule.)
    """

    def __init__(self, on_missed: MissedHandler | None = None) -> None:
        super().__init__()
        self._on_missed = on_missed
        self._tasks: set[asyncio.Task[Any]] = set()
        self._current: dict[str, asyncio.Task[Any]] = {}
        self._pending: dict[str, tuple[Any, datetime, tuple[Any, ...]]] = {}
        self._stopped = False
        # Fires due together, launched together once APScheduler has handed them all over; and the
        # jobs of fires handed over but not launched yet (in the batch, or the others' share).
        self._batch: list[tuple[Any, datetime, tuple[Any, ...]]] = []
        self._deferred: set[str] = set()
        self._taken: set[tuple[str, datetime]] = set()  # fires taken over from their owner
        self.rank, self.replicas = 0, 1
        self.positions: dict[str, int] = {}  # each job's place among the jobs by name
        self.everyone: Callable[[], bool] = lambda: False  # every fire is tried here (try_every_fire)

    def owns(self, job: str) -> bool:
        """Whether this replica runs ``job``'s fires: it owns them (see :func:`owner`), or the
        database is out — every replica then tries every fire, and each failure is counted for the
        outage's report (bot.watch), as a replica standing by cannot tell — or the replicas cannot
        stand by (too few connections: bot.standby); the claim keeps each fire to one run."""
        return self.everyone() or owner(self.positions.get(job, 0), self.replicas) == self.rank

    def _runs_here(self, job: str, scheduled_for: datetime) -> bool:
        """Whether this fire is launched here: an automatic-resume timer (each replica runs its own),
        a fire taken over (:meth:`take_over`), or one of the jobs this replica runs (:meth:`owns`)."""
        return job.startswith("auto-resume:") or (job, scheduled_for) in self._taken or self.owns(job)

    def _launch_batch(self) -> None:
        """Launch the fires due together that this replica owns; the others are their owners' to
        run. A replica stands by for them (bot.standby): one that is still unclaimed 2.5 s after
        its instant — its owner died or froze — is handed back here (:meth:`take_over`).
        (The automatic-resume timers are not shared: each replica runs its own at once, and the
        database keeps them to one resume.)"""
        batch, self._batch = sorted(self._batch, key=lambda fire: fire[0].id), []
        if self._stopped:
            self._drop(batch)
            return
        for fire in batch:
            job, scheduled_for, _ = fire
            if self._runs_here(job.id, scheduled_for):
                self._taken.discard((job.id, scheduled_for))
                self._launch(*fire)
            else:
                self._deferred.discard(job.id)
                self._run_job_success(job.id, [])
                if (waiting := self._pending.pop(job.id, None)) is not None:  # a fire taken over meanwhile
                    self._launch(*waiting)

    def take_over(self, job: Any, scheduled_for: datetime) -> None:
        """Run a fire this replica does not own: still unclaimed 2.5 s after its instant
        (bot.standby). As a fire handed over by APScheduler is: one fire of a job at a time here."""
        with self._lock:
            self._instances[job.id] += 1  # answered once, as a submission is (BaseExecutor)
        self._taken.add((job.id, scheduled_for))
        self._do_submit_job(job, [scheduled_for])

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._loop: asyncio.AbstractEventLoop = scheduler._eventloop

    def shutdown(self, wait: bool = True) -> None:
        # Unlike AsyncIOExecutor, cancel nothing: Scheduler.stop() awaits the runs in progress.
        # Fires kept for later are dropped: no new work once stopping.
        self._stopped = True
        for job_id, _ in self._pending.items():
            self._loop.call_soon(self._run_job_success, job_id, [])
        self._pending.clear()

    def _drop(self, fires: list[tuple[Any, datetime, tuple[Any, ...]]]) -> None:
        """Fires handed over but never launched (the service is stopping): answered, and told to the
        watcher (another replica runs them, or they are reported missed)."""
        for job, scheduled_for, _ in fires:
            self._deferred.discard(job.id)
            self._missed(job, [scheduled_for], "the service was stopping")
            self._run_job_success(job.id, [])

    def _missed(self, job: Any, instants: list[datetime], reason: str) -> None:
        if self._on_missed is not None and instants and not job.id.startswith("auto-resume:"):
            self._on_missed(job.id, instants, reason)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        scheduled_for = run_times[-1]  # coalesce: one run for fires that piled up
        # Several at once: the event loop did not wake for the earlier ones (a stall).
        self._missed(job, list(run_times[:-1]), "the service was stalled")
        # The arguments as they are now (the schedule's version): a fire kept for later must not
        # take those of a schedule armed after it.
        args = tuple(job.args)
        if job.id not in self._current and job.id not in self._deferred:
            if not self._batch:
                self._loop.call_soon(self._launch_batch)  # after APScheduler's pass over the due jobs
            self._batch.append((job, scheduled_for, args))
            self._deferred.add(job.id)
            return
        if not self._runs_here(job.id, scheduled_for):
            # Another replica's to run (its run waits for this one's end there); nothing kept here.
            self._loop.call_soon(self._run_job_success, job.id, [])
            return
        self._taken.discard((job.id, scheduled_for))
        superseded = self._pending.get(job.id)
        self._pending[job.id] = (job, scheduled_for, args)
        if superseded is not None:
            self._missed(job, [superseded[1]], "a run was still in progress")
            log.info("fire of %s for %s coalesced into the one for %s (a run was still going)", job.id,
                     superseded[1].isoformat(), scheduled_for.isoformat(),
                     extra={"job": job.id, "trigger": "schedule", "status": "coalesced",
                            "scheduled_for": superseded[1].isoformat()})
            # Each submission is answered once; BaseExecutor counts it right after this returns.
            self._loop.call_soon(self._run_job_success, job.id, [])
        else:
            log.info("fire of %s for %s waits for the run in progress", job.id, scheduled_for.isoformat())

    def _launch(self, job: Any, scheduled_for: datetime, args: tuple[Any, ...]) -> asyncio.Task[Any]:
        async def fire() -> list[JobExecutionEvent]:
            late = datetime.now(UTC) - scheduled_for
            if late > MISFIRE_GRACE:
                self._missed(job, [scheduled_for], f"the service was stalled ({late.total_seconds():.0f} s late)")
                log.warning("fire of %s for %s skipped: %.1f s late", job.id, scheduled_for.isoformat(),
                            late.total_seconds(), extra={"job": job.id, "trigger": "schedule", "status": "late",
                                                         "scheduled_for": scheduled_for.isoformat()})
                return []
            try:
                value = await job.func(*args, scheduled_for=scheduled_for)
            except Exception as exc:
                log.exception("fire of %s for %s failed", job.id, scheduled_for.isoformat())
                return [JobExecutionEvent(EVENT_JOB_ERROR, job.id, job._jobstore_alias, scheduled_for,
                                          exception=exc)]
            return [JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, job._jobstore_alias, scheduled_for,
                                      retval=value)]

        def done(task: asyncio.Task[list[JobExecutionEvent]]) -> None:
            self._tasks.discard(task)
            self._current.pop(job.id, None)
            self._run_job_success(job.id, [] if task.cancelled() else task.result())
            waiting = self._pending.pop(job.id, None)
            if waiting is not None and not self._stopped:
                self._launch(*waiting)

        task = self._loop.create_task(fire(), name=f"fire:{job.id}:{scheduled_for.isoformat()}")
        task.add_done_callback(done)
        self._tasks.add(task)
        self._current[job.id] = task
        self._deferred.discard(job.id)
        return task

    async def drain(self, within_s: float) -> bool:
        """Wait for the runs in progress, up to ``within_s`` seconds; True if none is left."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=within_s)
        return not pending


class Scheduler:
    def __init__(self, schedules: Mapping[str, Schedule], timezone: ZoneInfo,
                 on_fire: FireHandler, on_pause_expired: Callable[[str], Awaitable[Any]],
                 on_missed: MissedHandler | None = None) -> None:
        self._executor = FireExecutor(on_missed)
        self._aps = AsyncIOScheduler(
            timezone=timezone,
            executors={"default": self._executor},
            # misfire_grace_time=None and no instance limit here: FireExecutor applies MISFIRE_GRACE
            # and runs one fire of a job at a time itself, keeping (not dropping) the next one.
            # coalesce=False: FireExecutor coalesces itself, and needs to see the fires it drops
            # (APScheduler would drop them silently) to report them missed.
            job_defaults={"coalesce": False, "max_instances": 1_000_000, "misfire_grace_time": None},
        )
        self._schedules = dict(schedules)
        self._executor.positions = {job: n for n, job in enumerate(sorted(self._schedules))}
        self._on_fire = on_fire
        self._on_pause_expired = on_pause_expired
        # Told when the fires this replica stands by for change: the replicas up, a schedule (bot.standby).
        self.on_change: Callable[[], None] = lambda: None

    def spread(self, rank: int, replicas: int) -> None:
        """This replica is number ``rank`` (from 0) of ``replicas`` up: see :func:`owner`."""
        if (rank, replicas) != (self._executor.rank, self._executor.replicas):
            self._executor.rank, self._executor.replicas = rank, replicas
            self.on_change()

    def runs_itself(self, job: str) -> bool:
        """Whether this replica runs ``job``'s fires now (FireExecutor.owns)."""
        return self._executor.owns(job)

    def alone(self) -> bool:
        """Whether this replica is the only one up (the heartbeat says)."""
        return self._executor.replicas <= 1

    def standing_by(self) -> bool:
        """Whether other replicas own fires that this one stands by for (bot.standby)."""
        return self._executor.replicas > 1 and not self._executor.everyone()

    def try_every_fire(self, everyone: Callable[[], bool]) -> None:
        """While ``everyone()``, every fire is tried here (FireExecutor.owns): the database is out,
        or this replica cannot stand by (bot.standby)."""
        self._executor.everyone = everyone

    def others_fires(self, after: datetime, until: datetime,
                     most: int) -> tuple[list[tuple[str, datetime, int]], datetime] | None:
        """The fires in (``after``, ``until``] that other replicas own, as (job, instant, schedule
        version) in order of instant; about ``most`` of them at most (never part of an instant's).
        Also the instant up to which the list is whole: ``until``, or earlier when cut short.
        None: this replica stands by for nobody (alone, or the database is out)."""
        rank, replicas = self._executor.rank, self._executor.replicas
        if not self.standing_by():
            return None
        heap: list[tuple[datetime, str, Schedule]] = []
        # In UTC: as the database gives them back (a zone's datetimes in a repeated hour would
        # compare by wall time, and never equal the database's).
        for job, schedule in self._schedules.items():
            at = schedule.expression.next_after(after, schedule.tz).astimezone(UTC)
            if at <= until and self._aps.get_job(job) is not None:
                heap.append((at, job, schedule))
        heapq.heapify(heap)
        fires: list[tuple[str, datetime, int]] = []
        while heap:
            at, job, schedule = heap[0]
            if len(fires) >= most and fires[-1][1] < at:
                return fires, fires[-1][1]
            heapq.heappop(heap)
            if owner(self._executor.positions.get(job, 0), replicas) != rank:
                fires.append((job, at, schedule.version))
            if (following := schedule.expression.next_after(at, schedule.tz).astimezone(UTC)) <= until:
                heapq.heappush(heap, (following, job, schedule))
        return fires, until

    def take_over(self, job: str, scheduled_for: datetime) -> None:
        """Run another replica's fire, still unclaimed 2.5 s after its instant (bot.standby)."""
        armed = self._aps.get_job(job)
        if armed is not None and self._aps.running:
            self._executor.take_over(armed, scheduled_for)

    def start(self) -> None:
        for job, schedule in self._schedules.items():
            self._aps.add_job(self._fire, CronTrigger(schedule.expression, schedule.tz), args=[job, schedule.version],
                              id=job, name=job)
        self._aps.start()

    def follow(self, schedule: Schedule) -> None:
        """Re-arm ``schedule.job``'s trigger if the database has a newer schedule than the one armed.

        The first fire of the new schedule is the first at or after the moment it was set, so a
        fire that fell between the change and this replica hearing of it still runs (late by
        moments; the run's claim keeps it to one run across replicas)."""
        armed = self._schedules.get(schedule.job)
        if armed is None or armed.version >= schedule.version:
            return
        self._schedules[schedule.job] = schedule
        if self._aps.get_job(schedule.job) is None:
            return  # not started yet: start() arms the newest
        since = (schedule.set_at or datetime.now(UTC)) - timedelta(microseconds=1)
        first = schedule.expression.next_after(min(since, datetime.now(UTC)), schedule.tz)
        self._aps.modify_job(schedule.job, trigger=CronTrigger(schedule.expression, schedule.tz),
                             args=[schedule.job, schedule.version], next_run_time=first)
        self.on_change()
        log.info("%s now follows %s: %s (%s), next fire %s", schedule.job, schedule.cron, schedule.describe(),
                 schedule.timezone, first.isoformat())

    # ``scheduled_for`` has a default only because APScheduler checks the arguments when the job
    # is added; FireExecutor always passes it.
    async def _fire(self, job: str, version: int, *, scheduled_for: datetime | None = None) -> None:
        assert scheduled_for is not None
        try:
            await self._on_fire(job, scheduled_for, version)
        except DatabaseUnavailable as exc:
            # Already logged and reported by the runner; the schedule goes on.
            log.debug("fire of %s for %s failed: %s", job, scheduled_for.isoformat(), exc)

    async def _expire(self, job: str, attempt: int = 0, *, scheduled_for: datetime | None = None) -> None:
        try:
            await self._on_pause_expired(job)
        except DatabaseUnavailable as exc:
            # The pause has run out (every fire reads it so); recording and announcing that waits
            # for the database: try again, sooner first, until it is done.
            delay = min(2.0 ** attempt, 30.0)
            log.warning("the timed pause of %s ran out, but it cannot be recorded yet (%s); trying again in %.0f s",
                        job, exc, delay)
            timer_id = f"auto-resume:{job}"
            if self._aps.running:
                self._aps.add_job(self._expire, DateTrigger(datetime.now(UTC) + timedelta(seconds=delay)),
                                  args=[job, attempt + 1], id=timer_id, name=timer_id, misfire_grace_time=None,
                                  replace_existing=True)

    def watch_state(self, state: JobState) -> None:
        """Follow the job's schedule, and arrange the automatic resume of a timed pause.

        A timer is replaced by the next timed pause but never removed: a state read just after
        the pause ran out says "not paused" before the automatic resume is recorded, and removing
        the timer then would leave it unrecorded. A timer with nothing left to do (resumed by
        hand meanwhile) finds nothing to expire and says nothing."""
        if state.schedule is not None:
            self.follow(state.schedule)
        if state.paused and state.resume_at is not None:
            timer_id = f"auto-resume:{state.job}"
            self._aps.add_job(self._expire, DateTrigger(state.resume_at), args=[state.job],
                              id=timer_id, name=timer_id, misfire_grace_time=None, replace_existing=True)

    async def stop(self, grace_s: float) -> None:
        """Stop firing, then let the runs in progress finish (up to ``within_s`` seconds)."""
        if self._aps.running:
            self._aps.shutdown(wait=False)
        if not await self._executor.drain(grace_s):
            log.error("stopping with a run still in progress after %.0f s", grace_s)
