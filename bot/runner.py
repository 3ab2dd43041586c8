"""One run of a job: claim it, do the work, record it — in one transaction — then report it.

The whole run is one PostgreSQL transaction on one connection:

1. an advisory lock on the job (``pg_advisory_xact_lock``), so two runs of a job never overlap,
   in this process or any replica; it is released with the transaction, even if the process dies;
2. for a fire of the schedule, the job's row, read from the database at fire time: paused, the
   instant skipped, or no longer an instant of the schedule (it changed since this fire was
   armed) — then nothing runs;
3. the claim: ``INSERT … ON CONFLICT (job, scheduled_for) DO NOTHING`` — a fire another replica
   already ran gives no row, and this replica does nothing;
4. the job's work, inside a savepoint, so a job that raises is rolled back alone and the run is
   still recorded as failed; a job still going after ``FOOJOB_TIMEOUT`` is stopped (its statement
   cancelled, its work rolled back to the savepoint) and recorded as failed, ``timed out after …``;
5. the record's final status, result, error and times, and its message (as the notification
   policy and the failure streak decide); COMMIT.

The timed-out run is recorded in the same transaction, after its work is rolled back, rather
than in a new one: the transaction keeps the fire's claim and the job's lock to the end, so no
other replica waiting for that fire can run it a second time meanwhile.

A crash anywhere before COMMIT leaves nothing behind (no half row, no claim), and the advisory
lock goes with the dead connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg

from bot.catalogue import JobSpec
from bot.db import CONNECTION_ERRORS, acquire
from bot.errors import AlreadyRunning, BadInput, DatabaseUnavailable, UnknownJob
from bot.messages import card_messages, run_result_message, running_card, truncate, unfinished_card
from bot.metrics import Metrics
from bot.model import JobContext, RunRecord, Trigger
from bot.notify import AfterCommit, Message, Notifier, stage
from bot.schedules import fires_at, parse_cron, parse_zone
from bot.timefmt import span

log = logging.getLogger(__name__)

# How long a fire of the schedule waits for a run already in progress (a manual run, or a long
# run on another replica) before giving the fire up.
SCHEDULED_LOCK_WAIT = "30s"



MAX_ERROR = 2000  # characters of a job's error kept with its run
# A run still going this long after it started gets its card in the channel (SLACK_CHANNEL), edited
# into its result when it ends; a shorter run posts only its result.
CARD_AFTER_S = 2.0
# The card's post waits this long at most for a connection and its insert: a run never waits on
# its card (a pool taken by runs that each wait for their card would wait for ever).
CARD_POST_S = 2.0
# After a timeout, how long the cancelled statement may take to give way before the connection
# itself is cut (a server that does not answer the cancel).
CANCEL_GRACE_S = 10.0


@dataclass(frozen=True)
class Policy:
    """How failure streaks are told, for every job (SPEC "Watching the job"): FOOJOB_ALERT_AFTER,
    FOOJOB_ALERT_MENTION. Each job's timeout and notify policy are its own (bot.catalogue.JobSpec)."""

    alert_after: int = 3
    alert_mention: str | None = None


class Watch(Protocol):
    """Told of fires that did not run and of the database coming and going (``bot.watch``)."""

    def missed(self, job: str, instants: list[datetime], reason: str) -> None: ...

    def unreachable(self, job: str, trigger: Trigger, scheduled_for: datetime | None, error: str) -> None: ...

    def reachable(self) -> None: ...


class Pings(Protocol):
    """Heartbeat pings for scheduled runs (``bot.pings``): queued, never awaited."""

    def started(self, run_key: str) -> None: ...

    def succeeded(self, run_key: str) -> None: ...

    def failed(self, run_key: str, reason: str) -> None: ...


class _CardTimer:
    """A run's card in the channel: posted ``CARD_AFTER_S`` into a run still going, in a
    transaction of its own (the run's commits only at its end), so that the card shows while it runs.
    ``settled()``: whether it was posted (waiting for a post under way; a timer not fired yet is
    called off)."""

    def __init__(self, runner: Runner, job: str, run_id: int, started_at: datetime) -> None:
        self._runner, self._job, self._run_id, self._started_at = runner, job, run_id, started_at
        self._posting = False
        self._task = asyncio.get_running_loop().create_task(self._post_later(), name=f"card:{job}:{run_id}")

    async def _stage(self, message: Message, unsaid: str) -> bool:
        """Put ``message`` in the outbox in a transaction of its own, within ``CARD_POST_S``; what
        keeps it from being written is a warning (``unsaid``), never the run's failure."""
        runner = self._runner
        try:
            async with asyncio.timeout(CARD_POST_S), acquire(runner._pool) as conn, conn.transaction():
                after = await stage(runner._notifier, conn, runner._q, message)
        except Exception as exc:
            log.warning("the card of run %d of %s %s (%s)", self._run_id, self._job, unsaid, type(exc).__name__)
            return False
        after()
        return True

    async def _post_later(self) -> bool:
        await asyncio.sleep(CARD_AFTER_S)
        self._posting = True
        card = running_card(self._job, self._run_id, self._started_at, self._runner._tz)
        return await self._stage(card, "was not posted: its result will be")

    async def settled(self) -> bool:
        if not self._posting:
            self.cancel()
            return False
        return await asyncio.shield(self._task)

    @property
    def posted(self) -> bool:
        return self._task.done() and not self._task.cancelled() and self._task.result() is True

    async def unfinished(self, exc: BaseException) -> None:
        """The run ended without committing: its card says so, best effort (the database may be
        what went away)."""
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        card = unfinished_card(self._job, self._run_id, self._started_at, reason, self._runner._tz)
        await self._stage(card, "still says it is running")

    def cancel(self) -> None:
        if not self._posting:
            self._task.cancel()


class _ConnectionLost(Exception):
    """The run's connection died while the job was running."""


def _run_key(job: str, scheduled_for: datetime) -> str:
    return f"{job}:{scheduled_for.astimezone(UTC).isoformat()}"


def _fire_fields(job: str, trigger: str, scheduled_for: datetime | None, status: str) -> dict[str, Any]:
    """Log fields of a fire that did not become a run."""
    return {"job": job, "trigger": trigger, "status": status,
            "scheduled_for": scheduled_for.isoformat() if scheduled_for else None}


class Runner:
    def __init__(self, pool: asyncpg.Pool, queries: Mapping[str, str], jobs: Mapping[str, JobSpec],
                 notifier: Notifier, timezone: ZoneInfo, metrics: Metrics | None = None,
                 policy: Policy | None = None) -> None:
        self._pool = pool
        self._q = queries
        self._jobs = jobs
        self._notifier = notifier
        self._tz = timezone
        self._metrics = metrics
        self._policy = policy or Policy()
        # Set by the service once they exist (the CLI has neither).
        self.watch: Watch | None = None
        self.pings: Pings | None = None
        # FOOJOB_HEARTBEAT_URL is one check, which watches one job, FOOJOB_DEFAULT_JOB (others' pings
        # would mix into it and hide its silence); with "{job}" in it, a check per job (None: all).
        self.ping_job: str | None = None

    def job(self, name: str) -> JobSpec:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(name) from None

    async def run(self, job_name: str, *, trigger: Trigger, scheduled_for: datetime | None = None,
                  triggered_by: str | None = None, schedule_version: int | None = None,
                  attempt: int = 1) -> RunRecord | None:
        """Run the job once and return its record (status ``succeeded`` or ``failed``).

        Manual runs raise :class:`AlreadyRunning` if a run of the job is in progress anywhere.
        Fires of the schedule wait for it instead (up to ``SCHEDULED_LOCK_WAIT``), and return None
        when the fire is not theirs to run: paused, skipped, no longer scheduled, or already claimed
        by another replica. ``schedule_version``: the version of the schedule the fire was armed
        with; when the database has another, the instant must be one of the new schedule's.
        ``attempt``: with trigger ``retry``, the attempt to make (2 or more), taken from the pending
        retries (once across replicas: None when another replica took it, or a pause cancelled it).
        A scheduled, catch-up or retry run that fails, of a job with ``retries`` left, queues its
        next attempt with its record and posts nothing: only a fire's last attempt is told.
        Raises :class:`DatabaseUnavailable` when PostgreSQL cannot be reached; the failure is
        reported all the same.
        """
        job = self.job(job_name)
        try:
            record = await self._run_in_transaction(job, trigger, scheduled_for, triggered_by, schedule_version,
                                                    attempt)
        except (AlreadyRunning, UnknownJob):
            raise
        except (DatabaseUnavailable, _ConnectionLost, *CONNECTION_ERRORS) as exc:  # type: ignore[misc]
            message = str(exc) if isinstance(exc, DatabaseUnavailable) else \
                f"database unavailable: {type(exc).__name__}: {exc}"
            log.error("run of %s (%s) could not be recorded: %s", job.name, trigger, message,
                      extra={"job": job.name, "trigger": trigger, "status": "failed", "error": message,
                             "scheduled_for": scheduled_for.isoformat() if scheduled_for else None})
            if self._metrics is not None:
                self._metrics.runs.labels(job.name, trigger, "failed").inc()
            # Not a message per fire: the watcher says it once for the outage (and once when it ends).
            if self.watch is not None:
                self.watch.unreachable(job.name, trigger, scheduled_for, message)
            # No /fail ping: the fire never started (no /start), every replica would send one, and a
            # paused job must say nothing; Healthchecks notices the missing success by itself.
            raise DatabaseUnavailable(message) from exc
        if self.watch is not None:
            self.watch.reachable()
        if record is None:
            return None
        level = logging.INFO if record.status == "succeeded" else logging.WARNING
        duration_ms = round(record.duration.total_seconds() * 1000, 1) if record.duration else None
        log.log(level, "run %d of %s (%s%s%s) %s in %s ms%s", record.id, record.job, record.trigger,
                f" for {scheduled_for.isoformat()}" if scheduled_for else "",
                f", attempt {record.attempt}" if record.attempt > 1 else "", record.status, duration_ms,
                f": {record.error}" if record.error else "",
                extra={"job": record.job, "run_id": record.id, "trigger": record.trigger, "attempt": record.attempt,
                       "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
                       "duration_ms": duration_ms, "status": record.status, "error": record.error})
        if self._metrics is not None:
            self._metrics.observe_run(record)
        return record

    async def _run_in_transaction(self, job: JobSpec, trigger: Trigger, scheduled_for: datetime | None,
                                  triggered_by: str | None, schedule_version: int | None,
                                  attempt: int) -> RunRecord | None:
        cards: list[_CardTimer] = []
        try:
            return await self._run_in_a_transaction(job, trigger, scheduled_for, triggered_by, schedule_version,
                                                    attempt, cards)
        except BaseException as exc:
            # The run did not commit (nothing of it was kept): a card it posted must not say "running".
            if cards and cards[0].posted:
                await cards[0].unfinished(exc)
            raise

    async def _run_in_a_transaction(self, job: JobSpec, trigger: Trigger, scheduled_for: datetime | None,
                                    triggered_by: str | None, schedule_version: int | None,
                                    attempt: int, cards: list[_CardTimer]) -> RunRecord | None:
        q = self._q
        afters: list[AfterCommit] = []  # what to do once the run has committed (wake the dispatcher…)
        async with acquire(self._pool) as conn, conn.transaction():
            if trigger == "manual":
                started_at = datetime.now(UTC)
                claim = await conn.fetchrow(q["claim_manual_run"], job.name, started_at, triggered_by)
                if not claim["locked"]:
                    raise AlreadyRunning(job.name)
                run_id = claim["id"]
            else:
                try:
                    if trigger == "retry":
                        await conn.execute(q["lock_fire"], job.name, scheduled_for, SCHEDULED_LOCK_WAIT)
                        started_at = datetime.now(UTC)
                        claim = await conn.fetchrow(q["claim_retry"], job.name, scheduled_for, attempt, started_at)
                    else:
                        attempt = 1
                        claim = await conn.fetchrow(q["claim_fire"], job.name, trigger, scheduled_for,
                                                    datetime.now(UTC), triggered_by,
                                                    schedule_version if trigger == "schedule" else None,
                                                    SCHEDULED_LOCK_WAIT)
                        started_at = claim["started_at"]
                except asyncpg.LockNotAvailableError:
                    log.warning("fire of %s for %s given up: a run was still in progress after %s",
                                job.name, scheduled_for, SCHEDULED_LOCK_WAIT,
                                extra=_fire_fields(job.name, trigger, scheduled_for, "given-up"))
                    if self.watch is not None and scheduled_for is not None:
                        self.watch.missed(job.name, [scheduled_for],
                                          f"waited {SCHEDULED_LOCK_WAIT} for a run in progress")
                    return None
                if trigger == "retry" and claim["id"] is None:
                    why = ("paused: its pending retries are cancelled" if claim["paused"] else
                           "taken by another replica, or cancelled")
                    log.info("attempt %d of %s for %s not made: %s", attempt, job.name,
                             scheduled_for.isoformat() if scheduled_for else None, why,
                             extra=_fire_fields(job.name, trigger, scheduled_for, "not-retried"))
                    return None
                if claim["id"] is None:
                    if claim["paused"]:
                        log.info("fire of %s for %s skipped: paused", job.name,
                                 scheduled_for.isoformat() if scheduled_for else None,
                                 extra=_fire_fields(job.name, trigger, scheduled_for, "skipped-paused"))
                        return None
                    if skip := self._not_to_run(claim, scheduled_for, trigger, schedule_version):
                        log.info("fire of %s for %s skipped: %s", job.name,
                                 scheduled_for.isoformat() if scheduled_for else None, skip[1],
                                 extra=_fire_fields(job.name, trigger, scheduled_for, skip[0]))
                        return None
                    if (trigger == "schedule" and schedule_version is not None and claim["cron"] is not None
                            and claim["schedule_version"] != schedule_version):
                        # Armed under an older schedule, and the new one has this instant too: claim it.
                        claim = await conn.fetchrow(q["claim_run"], job.name, trigger, scheduled_for, started_at,
                                                    triggered_by)
                    if claim is None or claim["id"] is None:
                        log.debug("fire of %s for %s already claimed by another replica", job.name, scheduled_for)
                        return None
                run_id = claim["id"]
                if self.pings is not None and scheduled_for is not None and self.ping_job in (None, job.name):
                    self.pings.started(_run_key(job.name, scheduled_for))

            card = _CardTimer(self, job.name, run_id, started_at) if self._notifier.cards(job.name) else None
            cards.extend([card] if card is not None else [])
            try:
                record, retrying = await self._work(conn, job, trigger, scheduled_for, triggered_by, attempt, claim,
                                                    run_id, started_at, card, afters)
            finally:
                if card is not None:
                    card.cancel()
        for after in afters:
            after()
        if self.pings is not None and scheduled_for is not None and self.ping_job in (None, job.name) and not retrying:
            key = _run_key(job.name, scheduled_for)
            if record.status == "succeeded":
                self.pings.succeeded(key)
            else:
                self.pings.failed(key, record.error or "failed")
        return record

    async def _work(self, conn: asyncpg.Connection, job: JobSpec, trigger: Trigger, scheduled_for: datetime | None,
                    triggered_by: str | None, attempt: int, claim: Mapping[str, Any], run_id: int,
                    started_at: datetime, card: _CardTimer | None,
                    afters: list[AfterCommit]) -> tuple[RunRecord, bool]:
        """The job's work in the run's transaction, then its record and messages (same transaction,
        committed by the caller, which then calls ``afters``). Returns the record, and whether the
        fire will be tried again."""
        q = self._q
        result, error = None, None
        # A savepoint: the job's work rolls back alone. (Not released on success: COMMIT does
        # that, one round trip fewer.)
        await conn.execute(q["savepoint_job"])
        timeout = job.timeout
        try:
            async with asyncio.timeout(timeout.total_seconds()) as deadline:
                result = await job.run(JobContext(conn=conn, queries=q, timezone=job.timezone))
                if job.sets_session:  # a file's SET LOCAL must not reach the run's own statements
                    await conn.execute(q["restore_session"])
            json.dumps(result)  # a result that cannot be stored is the job's failure too
        except Exception as exc:
            if conn.is_closed():  # the connection died under the job: nothing can be recorded on it
                raise _ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
            timed_out = isinstance(exc, TimeoutError) and deadline.expired()
            try:
                # After a timeout asyncpg has asked the server to cancel the statement; this
                # waits for that, then undoes the job's work.
                async with asyncio.timeout(CANCEL_GRACE_S):
                    await conn.execute(q["rollback_job"])
            except TimeoutError:
                conn.terminate()  # the server does not answer: cutting the connection rolls back
                raise _ConnectionLost(f"timed out after {span(timeout)}, then the cancel hung") from exc
            if timed_out:
                error = f"timed out after {span(timeout)}"
                if self._metrics is not None:
                    self._metrics.run_timeouts.labels(job.name).inc()
            else:
                # Whatever the job raised (a constraint, a timeout of its own, an OSError) is
                # its failure, recorded as such.
                error = truncate(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, MAX_ERROR)
            result = None
        record = RunRecord(id=run_id, job=job.name, trigger=trigger, scheduled_for=scheduled_for,
                           started_at=started_at, finished_at=datetime.now(UTC),
                           status="failed" if error else "succeeded", result=result, error=error,
                           triggered_by=triggered_by, attempt=attempt)
        if (error and trigger != "manual" and attempt <= job.retries
                and not await conn.fetchval(q["job_paused"], job.name)):
            # Tried again later, once across replicas (the pending retry is a row, taken by the
            # replica that makes the attempt): this attempt posts nothing and is no failure of
            # the streak; the next one is told to every replica at COMMIT (NOTIFY).
            assert record.finished_at is not None
            due = record.finished_at + job.retry_after(attempt)
            await conn.execute(q["finish_run_retry"], run_id, record.status, None, error, record.finished_at, due)
            if card is not None and await card.settled():  # its card says so (an edit: nobody is pinged)
                afters.append(await stage(self._notifier, conn, q, card_messages(record, self._tz, posted=True)[0]))
            log.info("%s will be tried again at %s (attempt %d of %d)", job.name, due.isoformat(), attempt + 1,
                     job.retries + 1, extra=_fire_fields(job.name, trigger, scheduled_for, "retry-queued"))
            return record, True
        # The messages are part of the run: committed with it (same statement), or not at all.
        messages = await self._messages(job, record, claim["failures"], claim["since"], card)
        staged = [self._notifier.in_transaction(message) for message in messages]
        rows = [row for row, _ in staged if row is not None]
        await conn.execute(q["finish_run"], run_id, record.status, result, error, record.finished_at,
                           rows or None)
        afters.extend(after_commit for _, after_commit in staged)
        return record, False

    async def _messages(self, job: JobSpec, record: RunRecord, streak: int, since: datetime | None,
                        card: _CardTimer | None) -> list[Message]:
        """The run's messages: its result as the notification policy has it; in a channel, its card
        (edited even when the policy posts nothing: a card never stays "running")."""
        told = self._told(job, record, streak, since)
        if card is None:
            return [run_result_message(record, self._tz, **told)] if told is not None else []
        posted = await card.settled()
        if told is None and not posted:
            return []
        return card_messages(record, self._tz, posted=posted, **(told or {}))

    def _told(self, job: JobSpec, record: RunRecord, streak: int, since: datetime | None) -> dict[str, Any] | None:
        """How the run's result is told, if the job's notification policy tells it (the arguments
        of its message; None: not told). ``streak``: the failures in a row before this run (counted
        in the database, whichever replica ran them)."""
        policy = self._policy
        if record.status == "succeeded":
            if streak:  # a recovery: every policy says it
                return {"failures": streak, "since": since}
            return {} if job.notify == "all" else None
        failures = streak + 1
        since = since or record.started_at
        if failures == policy.alert_after:  # once per streak
            return {"failures": failures, "since": since, "alert": True, "mention": policy.alert_mention}
        if job.notify in ("all", "failures") or failures == 1:
            return {"failures": failures, "since": since}
        return None

    @staticmethod
    def _not_to_run(state: Mapping[str, Any], scheduled_for: datetime | None, trigger: Trigger,
                    version: int | None) -> tuple[str, str] | None:
        """Why a fire read from the job's row must not run, as (status, words); None: it runs."""
        if scheduled_for is not None and state["skip_next"] == scheduled_for:
            return "skipped", "skip requested"
        if (trigger == "schedule" and version is not None and state["cron"] is not None
                and state["schedule_version"] != version):
            try:
                expression, tz = parse_cron(state["cron"]), parse_zone(state["timezone"])
            except BadInput:
                return None
            assert scheduled_for is not None
            if not fires_at(expression, tz, scheduled_for):
                return "unscheduled", "no longer scheduled (the schedule changed)"
        return None
