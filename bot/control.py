"""The control verbs — run-now, pause, resume, status, history, and the schedule's: show, set,
reset, skip, unskip, next — implemented once.

Slack, HTTP and the CLI are thin adapters over :class:`Control`. It returns plain data
(``bot.model``) and raises the package's errors; it knows nothing of Slack or HTTP wording.
State lives in PostgreSQL, so every verb acts the same whichever replica (or CLI) serves it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bot.catalogue import Catalogue, JobSpec
from bot.db import acquire
from bot.errors import BadInput, Conflict, DatabaseUnavailable, UnknownJob
from bot.messages import (
    paused_message,
    resumed_message,
    schedule_changed_message,
    skip_message,
    unfinished_card,
    unskip_message,
)
from bot.model import JobState, RunRecord, Status
from bot.notify import AfterCommit, Message, Notifier, nothing, stage
from bot.runner import Runner
from bot.schedules import Schedule, Source, parse_cron, parse_zone, same_expression

log = logging.getLogger(__name__)

MAX_HISTORY = 100
StateListener = Callable[[JobState], None]


@dataclass(frozen=True)
class Beat:
    """What a heartbeat answers."""

    speaker: bool  # this replica speaks for all during an outage (the first by name of those up)
    outbox_pending: bool  # a message waits in the outbox
    rank: int  # this replica's place (from 0) among the replicas up, by name
    replicas: int  # how many are up, this one included


@dataclass(frozen=True)
class PendingRetry:
    """An attempt of a failed fire still to make (SPEC "Retries")."""

    job: str
    scheduled_for: datetime
    attempt: int
    due_at: datetime


class Control:
    def __init__(self, pool: asyncpg.Pool, queries: Mapping[str, str], runner: Runner,
                 jobs: Catalogue, timezone: ZoneInfo, notifier: Notifier) -> None:
        self._pool = pool
        self._q = queries
        self._runner = runner
        # Every job with its settings (bot.catalogue), among them its *configured* schedule
        # (FOOJOB_CRON, an SQL file's header). The effective one is in the database; the configured
        # one is in force only until a service has started.
        self._jobs = jobs
        self._tz = timezone
        self._notifier = notifier
        self._listeners: list[StateListener] = []
        self._own_events: deque[int] = deque(maxlen=1000)  # audit events this process recorded
        self._seen: dict[str, int] = {}  # per job, the last audit event told of

    @property
    def jobs(self) -> list[str]:
        """The names of every job, sorted."""
        return sorted(self._jobs)

    @property
    def default_job(self) -> str:
        """FOOJOB_DEFAULT_JOB: the job of the version 1 endpoints and of the CLI without --job."""
        return self._jobs.default

    def spec(self, job: str) -> JobSpec:
        """The job's settings; UnknownJob for a name that is no job."""
        self._check_job(job)
        return self._jobs[job]

    def on_state_change(self, listener: StateListener) -> None:
        """Call ``listener`` with the new state after every pause and resume made here."""
        self._listeners.append(listener)

    def _check_job(self, job: str) -> None:
        if job not in self._jobs:
            raise UnknownJob(job)

    def _conn(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return acquire(self._pool)

    # -- verbs ------------------------------------------------------------------------------

    async def run_now(self, job: str, *, by: str) -> RunRecord:
        """Run the job now, paused or not. Raises AlreadyRunning if a run is in progress anywhere.
        The record says whether it succeeded; a failed run is not an exception here."""
        self._check_job(job)
        record = await self._runner.run(job, trigger="manual", triggered_by=by)
        assert record is not None  # manual runs are never skipped
        return record

    async def pause(self, job: str, *, by: str, duration: timedelta | None = None,
                    reason: str | None = None) -> JobState:
        """Pause the schedule (idempotent). With a duration it resumes by itself."""
        self._check_job(job)
        if reason is not None and len(reason) > 500:
            raise BadInput("the reason is too long (500 characters at most)")
        resume_at = datetime.now(UTC) + duration if duration else None
        async with self._conn() as conn, conn.transaction():
            state = self._state(job, await conn.fetchrow(self._q["pause_job"], job, by, reason or None, resume_at))
            cancelled = await conn.fetchval(self._q["cancel_retries"], job)  # a pause stops pending retries
            await self._record(conn, job, "pause", by, reason or None, resume_at, None)
            await conn.execute(self._q["notify_control"], job)  # every replica hears it at COMMIT
            after_commit = await stage(self._notifier, conn, self._q, paused_message(state, self._tz))
        after_commit()
        log.info("%s paused by %s%s%s%s", job, by, f" until {resume_at.isoformat()}" if resume_at else "",
                 f" ({reason})" if reason else "",
                 f"; {cancelled} pending retr{'y' if cancelled == 1 else 'ies'} cancelled" if cancelled else "")
        self._changed(state)
        return state

    async def resume(self, job: str, *, by: str) -> bool:
        """Resume the schedule (idempotent). Returns whether it was paused."""
        self._check_job(job)
        after_commit = nothing
        async with self._conn() as conn, conn.transaction():
            changed = await conn.fetchval(self._q["resume_job"], job) is not None
            if changed:
                await self._record(conn, job, "resume", by, None, None, None)
                await conn.execute(self._q["notify_control"], job)
                after_commit = await stage(self._notifier, conn, self._q, resumed_message(job, by, automatic=False))
        after_commit()
        if changed:
            log.info("%s resumed by %s", job, by)
        self._changed(await self.state(job))
        return changed

    async def expire_pause(self, job: str) -> bool:
        """End a timed pause whose time has come. Only one caller (replica) gets True."""
        after_commit = nothing
        async with self._conn() as conn, conn.transaction():
            changed = await conn.fetchval(self._q["expire_pause"], job) is not None
            if changed:
                await self._record(conn, job, "auto-resume", None, None, None, None)
                await conn.execute(self._q["notify_control"], job)
                after_commit = await stage(self._notifier, conn, self._q, resumed_message(job, None, automatic=True))
        after_commit()
        if changed:
            log.info("%s resumed automatically: its timed pause ran out", job)
            self._changed(await self.state(job))
        return changed

    async def state(self, job: str) -> JobState:
        self._check_job(job)
        async with self._conn() as conn:
            return self._state(job, await conn.fetchrow(self._q["job_state"], job))

    async def status(self, job: str) -> Status:
        self._check_job(job)
        async with self._conn() as conn:
            state = self._state(job, await conn.fetchrow(self._q["job_state"], job))
            last = await conn.fetchrow(self._q["last_run"], job)
            running = await conn.fetchval(self._q["job_is_running"], job)
        schedule = state.schedule
        assert schedule is not None
        return Status(
            job=job,
            state=state,
            schedule=schedule.cron,
            schedule_text=schedule.describe(),
            timezone=schedule.timezone,
            next_run_at=None if state.paused else schedule.fires(1)[0],
            running=bool(running),
            last_run=RunRecord.from_row(last) if last else None,
            schedule_source=schedule.source,
            skip_next=schedule.skipped(),
            description=self._jobs[job].description,
        )

    # -- the schedule -----------------------------------------------------------------------

    def configured(self, job: str) -> Schedule:
        """The schedule the environment or the job's file configures (in force until a service starts)."""
        spec = self._jobs[job]
        return Schedule(job, spec.cron, spec.timezone, "config", None, None, 0)

    async def schedule(self, job: str) -> Schedule:
        """The effective schedule, as every replica follows it."""
        schedule = (await self.state(job)).schedule
        assert schedule is not None
        return schedule

    async def preview(self, job: str, cron: str | None, timezone: str | None = None) -> tuple[Schedule, Schedule]:
        """``(current, proposed)`` without changing anything. ``cron`` None: back to the configured
        schedule; ``timezone`` None: the current zone. Raises BadInput naming a bad field or zone."""
        self._check_job(job)
        self._proposal(job, cron, timezone, self._tz)  # bad input is refused before any I/O
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["job_state"], job)
        current = self._schedule(job, row)
        if cron is None:
            return current, self._recorded_config(job, row)
        return current, self._proposal(job, cron, timezone, current.tz)

    def _proposal(self, job: str, cron: str | None, timezone: str | None, current_tz: ZoneInfo) -> Schedule:
        if cron is None:
            return self.configured(job)
        if not cron.strip():
            raise BadInput("cron: an expression is needed, such as \"*/10 * * * *\"")
        expression = parse_cron(" ".join(cron.split()))
        tz = parse_zone(timezone) if timezone is not None else current_tz
        return Schedule(job, expression, tz, "runtime", None, None, 0)

    async def set_schedule(self, job: str, cron: str, timezone: str | None = None, *, by: str) -> Schedule:
        """Make ``cron`` (in ``timezone``, else the current zone) the effective schedule of every
        replica. The same schedule again changes nothing."""
        self._check_job(job)
        self._proposal(job, cron, timezone, self._tz)  # bad input is refused before any I/O
        return await self._change(job, by, lambda current, _row: self._proposal(job, cron, timezone, current.tz),
                                  "runtime", "schedule-set")

    async def reset_schedule(self, job: str, *, by: str) -> Schedule:
        """Back to the configured schedule: the one the services were last started with, as the
        database recorded it (not this process's own FOOJOB_CRON: a CLI next to the service, or a
        replica in the middle of a rolling deploy, may have other variables)."""
        self._check_job(job)
        return await self._change(job, by, lambda _current, row: self._recorded_config(job, row), "config",
                                  "schedule-reset")

    def _recorded_config(self, job: str, row: Mapping[str, Any] | None) -> Schedule:
        if row is not None and row["configured_cron"] is not None:
            try:
                return Schedule(job, parse_cron(row["configured_cron"]), parse_zone(row["configured_timezone"]),
                                "config", None, None, 0)
            except BadInput:
                pass
        return self.configured(job)

    async def _change(self, job: str, by: str, make: Callable[[Schedule, Mapping[str, Any]], Schedule],
                      source: Source, action: str) -> Schedule:
        after_commit: AfterCommit = nothing
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["ensure_job_state"], job)
            row = await conn.fetchrow(self._q["lock_job_state"], job)
            current = self._schedule(job, row)
            new = make(current, row)
            if new.same_as(current) and current.source == source:
                return current
            after_commit = await self._write_schedule(conn, current, new, source, by, action, configured=None)
        after_commit()
        log.info("schedule of %s changed by %s: %s (%s) -> %s (%s)", job, by, current.cron, current.timezone,
                 new.cron, new.timezone)
        return await self._announce_state(job)

    async def _write_schedule(self, conn: asyncpg.Connection, current: Schedule, new: Schedule, source: Source,
                              by: str, action: str, configured: Schedule | None) -> AfterCommit:
        job, at = current.job, datetime.now(UTC)
        await conn.execute(self._q["set_schedule"], job, new.cron, new.timezone, source, by,
                           configured.cron if configured else None, configured.timezone if configured else None, at)
        written = Schedule(job, new.expression, new.tz, source, by, at, current.version + 1)
        detail = {"old": {"cron": current.cron, "timezone": current.timezone, "source": current.source},
                  "new": {"cron": new.cron, "timezone": new.timezone, "source": source}}
        await self._record(conn, job, action, by, None, None, detail)
        await conn.execute(self._q["notify_control"], job)
        return await stage(self._notifier, conn, self._q,
                           schedule_changed_message(current, written, by, action, self._tz))

    async def reconcile(self, job: str) -> Schedule:
        """At a service's start: the configured schedule becomes the effective one when it differs
        from the last configured schedule the database saw (a deploy changed the variables) or when
        no service has started before; otherwise the effective schedule (perhaps set at runtime)
        stays. Replicas starting together take turns on the job's row: one of them makes the change."""
        self._check_job(job)
        configured = self.configured(job)
        after_commit: AfterCommit = nothing
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["ensure_job_state"], job)
            row = await conn.fetchrow(self._q["lock_job_state"], job)
            if row["cron"] is None:
                await conn.execute(self._q["remember_configured"], job, configured.cron, configured.timezone,
                                   datetime.now(UTC))
            elif row["configured_cron"] is None:  # set from the CLI before any service started: it stays
                await conn.execute(self._q["remember_configured_only"], job, configured.cron, configured.timezone)
            elif not (same_expression(row["configured_cron"], configured.cron)
                      and row["configured_timezone"] == configured.timezone):
                current = self._schedule(job, row)
                after_commit = await self._write_schedule(conn, current, configured, "config", "deploy",
                                                          "schedule-deploy", configured=configured)
                log.warning("the configured schedule of %s changed (a deploy): %s (%s) is in force, was %s (%s)",
                            job, configured.cron, configured.timezone, current.cron, current.timezone)
        after_commit()
        return await self.schedule(job)

    async def skip(self, job: str, *, by: str) -> datetime:
        """Skip the next fire (only that one); returns its instant. A skip already set answers the
        same instant and changes nothing. Raises Conflict while paused: there is nothing to skip."""
        self._check_job(job)
        after_commit: AfterCommit = nothing
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["ensure_job_state"], job)
            row = await conn.fetchrow(self._q["lock_job_state"], job)
            if row["paused"]:
                raise Conflict(f"{job} is paused: no fire is coming to skip (resume it first)")
            schedule = self._schedule(job, row)
            if (already := schedule.skipped()) is not None:
                return already
            # The next fire that has not started: one under way holds its instant's lock (see
            # try_lock_fire), or has already claimed it.
            instant = datetime.now(UTC)
            while True:
                instant = schedule.expression.next_after(instant, schedule.tz)
                if (await conn.fetchval(self._q["try_lock_fire"], job, instant)
                        and not await conn.fetchval(self._q["fire_claimed"], job, instant)):
                    break
            await conn.execute(self._q["set_skip"], job, instant)
            await self._record(conn, job, "skip", by, None, None,
                               {"skipped": instant.isoformat()})
            await conn.execute(self._q["notify_control"], job)
            following = schedule.expression.next_after(instant, schedule.tz)
            after_commit = await stage(self._notifier, conn, self._q,
                                       skip_message(job, by, instant, following, self._tz))
        after_commit()
        log.info("%s: the fire of %s will be skipped (by %s)", job, instant.isoformat(), by)
        await self._announce_state(job)
        return instant

    async def unskip(self, job: str, *, by: str) -> datetime | None:
        """Clear the skip; returns the instant that will run again after all (None: no skip was set)."""
        self._check_job(job)
        after_commit: AfterCommit = nothing
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["ensure_job_state"], job)
            schedule = self._schedule(job, await conn.fetchrow(self._q["lock_job_state"], job))
            skipped = schedule.skipped()
            if skipped is None:
                return None
            await conn.execute(self._q["set_skip"], job, None)
            await self._record(conn, job, "unskip", by, None, None,
                               {"unskipped": skipped.isoformat()})
            await conn.execute(self._q["notify_control"], job)
            after_commit = await stage(self._notifier, conn, self._q, unskip_message(job, by, skipped, self._tz))
        after_commit()
        log.info("%s: the skip of %s was cleared (by %s)", job, skipped.isoformat(), by)
        await self._announce_state(job)
        return skipped

    async def _segments(self, job: str, since: datetime, until: datetime) -> list[tuple[datetime, datetime, Schedule]]:
        """``(since, until]`` cut where the schedule changed, each piece with the schedule in force
        (the audit trail says which schedule was in force when), oldest first."""
        async with self._conn() as conn:
            current = self._schedule(job, await conn.fetchrow(self._q["job_state"], job))
            changes = await conn.fetch(self._q["schedule_changes_since"], job, since)
        segments: list[tuple[datetime, datetime, Schedule]] = []
        start = since
        for change in changes:
            old = change["detail"]["old"]
            try:
                before = Schedule(job, parse_cron(old["cron"]), parse_zone(old["timezone"]), "config", None, None, 0)
            except BadInput:
                before = current
            segments.append((start, min(change["at"], until), before))
            start = change["at"]
        if start < until:
            segments.append((start, until, current))
        return segments

    async def fires_between(self, job: str, since: datetime, until: datetime, cap: int) -> list[datetime]:
        """The fire instants in ``(since, until]`` of the schedules in force then (at most ``cap``),
        without a skipped one."""
        fires: list[datetime] = []
        for low, high, schedule in await self._segments(job, since, until):
            skipped = schedule.skip_next
            at = low
            while len(fires) < cap and (at := schedule.expression.next_after(at, schedule.tz)) <= high:
                if at != skipped:
                    fires.append(at)
        return fires

    async def missed_between(self, job: str, since: datetime, until: datetime, cap: int) -> list[datetime]:
        """The fires in ``(since, until]`` that no run claimed (none, while the job is paused)."""
        if (await self.state(job)).paused:
            return []
        fires = await self.fires_between(job, since, until, cap)
        async with self._conn() as conn:
            ran = {r["scheduled_for"] for r in await conn.fetch(self._q["runs_between"], job, since, until)}
        return [at for at in fires if at not in ran]

    async def last_sign_of_life(self, job: str, replica: str, started_before: timedelta) -> datetime | None:
        """When another process, started more than ``started_before`` ago (not with this one), was
        last known up, or the job last ran: where a gap began."""
        async with self._conn() as conn:
            value: datetime | None = await conn.fetchval(self._q["last_sign_of_life"], replica, job,
                                                         started_before.total_seconds())
            return value

    async def another_alive(self, replica: str, within: timedelta) -> bool:
        """Whether a replica other than ``replica`` has said it is up within ``within`` (and not stopped)."""
        async with self._conn() as conn:
            return bool(await conn.fetchval(self._q["another_alive"], replica, within.total_seconds()))

    async def report_missed(self, job: str, instants: list[datetime], reason: str, message: Message) -> bool:
        """Claim the report of missed fires (keyed by the first) and stage ``message``; False when
        another replica reported them, a run took the fire, or the job is paused or skipping it."""
        after_commit: AfterCommit = nothing
        async with self._conn() as conn, conn.transaction():
            claimed = await conn.fetchval(self._q["report_missed"], job, instants[0], reason, len(instants))
            if claimed:
                after_commit = await stage(self._notifier, conn, self._q, message)
        after_commit()
        return claimed is not None

    async def claim_outage(self, since: datetime, until: datetime, cap: int,
                           message: Callable[[dict[str, int], bool], Message | None]) -> dict[str, int]:
        """The fires no replica ran in ``(since, until]`` (the database was unreachable), claimed
        once across replicas in ``foojob_missed`` (reason ``outage``), and ``message(claimed,
        missed_any)`` staged with them: how many of each job's this replica claimed (a fire another
        replica claimed first is its to report), and whether any fire was missed at all."""
        missed = {job: await self.missed_between(job, since, until, cap) for job in self.jobs}
        claimed: dict[str, int] = {}
        after_commit: AfterCommit = nothing
        async with self._conn() as conn, conn.transaction():
            for job, instants in missed.items():
                locked = [row["at"] for row in await conn.fetch(self._q["lock_outage_fires"], job, instants)] \
                    if instants else []
                rows = await conn.fetch(self._q["claim_outage_fires"], job, locked) if locked else []
                claimed[job] = len(rows)
            said = message(claimed, any(missed.values()))
            if said is not None:
                after_commit = await stage(self._notifier, conn, self._q, said)
        after_commit()
        return claimed

    async def _announce_state(self, job: str) -> Schedule:
        state = await self.state(job)
        self._changed(state)
        assert state.schedule is not None
        return state.schedule

    def _schedule(self, job: str, row: Mapping[str, Any] | None) -> Schedule:
        if row is None or row["cron"] is None:
            configured = self.configured(job)
            skip = row["skip_next"] if row is not None else None
            return Schedule(job, configured.expression, configured.tz, "config", None, None, 0, skip)
        try:
            expression, tz = parse_cron(row["cron"]), parse_zone(row["timezone"])
        except BadInput as exc:  # written by a version that reads crontab differently
            log.error("the stored schedule of %s cannot be read (%s): using the configured one", job, exc)
            return self.configured(job)
        return Schedule(job, expression, tz, row["schedule_source"] or "config", row["schedule_set_by"],
                        row["schedule_set_at"], row["schedule_version"], row["skip_next"])

    def _state(self, job: str, row: Mapping[str, Any] | None) -> JobState:
        schedule = self._schedule(job, row)
        # No row yet, or a timed pause that ran out (it reads as not paused): nothing stale to show.
        if row is None or not row["paused"]:
            return JobState(job=job, paused=False, paused_by=None, paused_at=None, pause_reason=None,
                            resume_at=None, schedule=schedule)
        return JobState(job=job, paused=True, paused_by=row["paused_by"], paused_at=row["paused_at"],
                        pause_reason=row["pause_reason"], resume_at=row["resume_at"], schedule=schedule)

    async def history(self, job: str | None = None, limit: int = 10) -> list[RunRecord]:
        if job is not None:
            self._check_job(job)
        if not 1 <= limit <= MAX_HISTORY:
            raise BadInput(f"limit must be between 1 and {MAX_HISTORY}")
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["runs"], job, limit)
        return [RunRecord.from_row(row) for row in rows]

    async def first_request(self, key: str, window: timedelta) -> bool:
        """True the first time ``key`` is seen within ``window``, on any replica; False for a repeat
        (a double click). Lets a surface make a non-idempotent verb take effect once."""
        async with self._conn() as conn:
            return await conn.fetchval(self._q["claim_request_key"], key, window.total_seconds()) is not None

    async def heartbeat(self, conn: asyncpg.Connection, replica: str, alive_within: timedelta) -> Beat:
        """Say this replica is up, on ``conn`` (the LISTEN connection); what the answer tells."""
        row = await conn.fetchrow(self._q["replica_heartbeat"], replica, alive_within.total_seconds())
        return Beat(speaker=row["speaker"] == replica, outbox_pending=bool(row["outbox_pending"]),
                    rank=int(row["rank"]), replicas=int(row["replicas"]))

    async def standby_watch(self, jobs: list[str], instants: list[datetime], versions: list[int],
                            grace: timedelta, until: datetime) -> list[asyncpg.Record]:
        """Wait, in one statement, for a fire of these still unclaimed ``grace`` after its instant
        (bot.standby); at ``until`` at the latest."""
        wait_s = (until - datetime.now(UTC)).total_seconds()
        # READ COMMITTED whatever the server's default: each check must see the claims made since.
        async with self._conn() as conn, conn.transaction(isolation="read_committed"):
            await conn.execute(self._q["no_statement_timeout"])  # a server's own would cut the wait short
            rows: list[asyncpg.Record] = await conn.fetch(self._q["standby_watch"], jobs, instants, versions,
                                                          grace, until, timeout=max(wait_s, 0) + 30)
        return rows

    async def jobs_on_record(self) -> list[str]:
        """The jobs the database knows of: those a service has recorded, whatever this process's
        catalogue (a CLI without the service's FOOJOB_JOBS_DIR lacks its SQL jobs)."""
        async with self._conn() as conn:
            return [row["job"] for row in await conn.fetch(self._q["jobs_on_record"])]

    async def group_changed(self, group: str) -> None:
        """Tell every replica that a Slack user group's members changed (Slack tells one)."""
        async with self._conn() as conn:
            await conn.execute(self._q["notify_roles"], group)

    async def goodbye(self, replica: str) -> None:
        async with self._conn() as conn:
            await conn.execute(self._q["replica_gone"], replica)

    async def pending_retries(self, job: str | None = None) -> list[PendingRetry]:
        """The attempts still to make, of ``job`` or of every job, soonest first."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["pending_retries"], job)
        return [PendingRetry(r["job"], r["scheduled_for"], r["attempt"], r["due_at"]) for r in rows]

    async def has_run(self, job: str) -> bool:
        async with self._conn() as conn:
            return bool(await conn.fetchval(self._q["job_has_run"], job))

    async def health(self, job: str) -> tuple[datetime | None, int]:
        """When the job last succeeded, and how many runs failed since (for the metrics)."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["job_health"], job)
        return row["last_success"], int(row["failures"])

    async def channel_problem(self) -> str | None:
        """The last hour's refusal of a channel (the bot not in it…), as ``"<error> (<channel>)"``."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["channel_problem"])
        if row is None:
            return None
        error = str(row["last_error"]).rsplit(": ", 1)[-1]
        return f"{error} ({row['channel']})"

    async def sweep_cards(self) -> tuple[int, int]:
        """Edit the cards of runs whose replica died mid-run (they would say "running" for ever):
        only where no run of the job is in progress (a dead client's backend may hold the job's
        lock a moment longer). Returns how many were edited, and how many wait for their job."""
        async with self._conn() as conn:
            orphans = await conn.fetch(self._q["orphan_cards"])
            swept = waiting = 0
            for orphan in orphans:
                if await conn.fetchval(self._q["job_is_running"], orphan["job"]):
                    waiting += 1
                    continue
                run_id = int(str(orphan["card"]).removeprefix("run:"))
                message = unfinished_card(orphan["job"], run_id, orphan["created_at"],
                                          "its replica stopped before the run ended", self._tz)
                async with conn.transaction():
                    after = await stage(self._notifier, conn, self._q, message)
                after()
                swept += 1
        return swept, waiting

    async def outbox_depth(self) -> tuple[int, float]:
        """Messages waiting for Slack, and the age in seconds of the oldest (0 when none)."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["outbox_depth"])
        return int(row["depth"]), float(row["oldest_age_s"] or 0.0)

    async def ping(self) -> None:
        # Twice: after an outage the pool may hand out one connection the server already closed;
        # the failure discards it, and a second try tells whether the database is really down.
        try:
            async with self._conn() as conn:
                await conn.fetchval(self._q["ping"])
        except DatabaseUnavailable:
            async with self._conn() as conn:
                await conn.fetchval(self._q["ping"])

    async def _record(self, conn: asyncpg.Connection, job: str, action: str, by: str | None, reason: str | None,
                      resume_at: datetime | None, detail: Mapping[str, Any] | None) -> None:
        """Write a change to the audit trail, and remember it as this process's own (it tells of
        it itself; those made elsewhere are told when heard of: :meth:`changes_elsewhere`)."""
        event = await conn.fetchval(self._q["record_control_event"], job, action, by, reason, resume_at, detail)
        self._own_events.append(int(event))

    async def watch_changes(self) -> None:
        """From now on, :meth:`changes_elsewhere` tells of changes after the last one recorded now."""
        async with self._conn() as conn:
            last = int(await conn.fetchval(self._q["control_events_last"]))
        self._seen = dict.fromkeys(self.jobs, last)

    async def changes_elsewhere(self, job: str) -> list[Mapping[str, Any]]:
        """The job's changes recorded since last asked, by another process (the CLI, another
        replica): the audit trail's rows, oldest first."""
        if job not in self._seen:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["control_events_after"], job, self._seen[job])
        if rows:
            self._seen[job] = int(rows[-1]["id"])
        own = set(self._own_events)
        return [row for row in rows if int(row["id"]) not in own]

    def _changed(self, state: JobState) -> None:
        for listener in self._listeners:
            listener(state)
