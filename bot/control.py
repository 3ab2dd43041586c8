"""The control verbs — run-now, pause, resume, status, history — implemented once.

Slack, HTTP and the CLI are thin adapters over :class:`Control`. It returns plain data
(``bot.model``) and raises the package's errors; it knows nothing of Slack or HTTP wording.
State lives in PostgreSQL, so every verb acts the same whichever replica (or CLI) serves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from bot.cron import CronSchedule
from bot.db import acquire
from bot.errors import BadInput, DatabaseUnavailable, UnknownJob
from bot.model import JobState, RunRecord, Status
from bot.notify import Notifier, stage
from bot.runner import Runner
from bot.slack.blocks import paused_message, resumed_message

log = logging.getLogger(__name__)

MAX_HISTORY = 100
StateListener = Callable[[JobState], None]


class Control:
    def __init__(self, pool: asyncpg.Pool, queries: Mapping[str, str], runner: Runner,
                 schedules: Mapping[str, CronSchedule], timezone: ZoneInfo, notifier: Notifier) -> None:
        self._pool = pool
        self._q = queries
        self._runner = runner
        self._schedules = schedules
        self._tz = timezone
        self._notifier = notifier
        self._listeners: list[StateListener] = []

    @property
    def jobs(self) -> list[str]:
        return list(self._schedules)

    def on_state_change(self, listener: StateListener) -> None:
        """Call ``listener`` with the new state after every pause and resume made here."""
        self._listeners.append(listener)

    def _check_job(self, job: str) -> None:
        if job not in self._schedules:
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
            state = JobState(**await conn.fetchrow(self._q["pause_job"], job, by, reason or None, resume_at))
            await conn.execute(self._q["record_control_event"], job, "pause", by, reason or None, resume_at)
            await conn.execute(self._q["notify_control"], job)  # every replica hears it at COMMIT
            after_commit = await stage(self._notifier, conn, self._q, paused_message(state, self._tz))
        after_commit()
        log.info("%s paused by %s%s%s", job, by, f" until {resume_at.isoformat()}" if resume_at else "",
                 f" ({reason})" if reason else "")
        self._changed(state)
        return state

    async def resume(self, job: str, *, by: str) -> bool:
        """Resume the schedule (idempotent). Returns whether it was paused."""
        self._check_job(job)
        after_commit = _nothing
        async with self._conn() as conn, conn.transaction():
            changed = await conn.fetchval(self._q["resume_job"], job) is not None
            if changed:
                await conn.execute(self._q["record_control_event"], job, "resume", by, None, None)
                await conn.execute(self._q["notify_control"], job)
                after_commit = await stage(self._notifier, conn, self._q, resumed_message(job, by, automatic=False))
        after_commit()
        if changed:
            log.info("%s resumed by %s", job, by)
        self._changed(await self.state(job))
        return changed

    async def expire_pause(self, job: str) -> bool:
        """End a timed pause whose time has come. Only one caller (replica) gets True."""
        after_commit = _nothing
        async with self._conn() as conn, conn.transaction():
            changed = await conn.fetchval(self._q["expire_pause"], job) is not None
            if changed:
                await conn.execute(self._q["record_control_event"], job, "auto-resume", None, None, None)
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
            return _state(job, await conn.fetchrow(self._q["job_state"], job))

    async def status(self, job: str) -> Status:
        self._check_job(job)
        async with self._conn() as conn:
            state = _state(job, await conn.fetchrow(self._q["job_state"], job))
            last = await conn.fetchrow(self._q["last_run"], job)
            running = await conn.fetchval(self._q["job_is_running"], job)
        schedule = self._schedules[job]
        return Status(
            job=job,
            state=state,
            schedule=schedule.text,
            schedule_text=schedule.describe(),
            timezone=self._tz.key,
            next_run_at=None if state.paused else schedule.next_after(datetime.now(UTC), self._tz),
            running=bool(running),
            last_run=RunRecord.from_row(last) if last else None,
        )

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

    async def heartbeat(self, replica: str) -> None:
        async with self._conn() as conn:
            await conn.execute(self._q["replica_heartbeat"], replica)

    async def goodbye(self, replica: str) -> None:
        async with self._conn() as conn:
            await conn.execute(self._q["replica_gone"], replica)

    async def another_replica_up_at(self, instant: datetime, replica: str, margin: timedelta) -> bool:
        async with self._conn() as conn:
            return bool(await conn.fetchval(self._q["replica_alive_at"], instant, replica, margin.total_seconds()))

    async def has_run(self, job: str) -> bool:
        async with self._conn() as conn:
            return bool(await conn.fetchval(self._q["job_has_run"], job))

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

    def _changed(self, state: JobState) -> None:
        for listener in self._listeners:
            listener(state)


def _nothing() -> None:
    return None


def _state(job: str, row: Mapping[str, object] | None) -> JobState:
    # No row yet, or a timed pause that ran out (it reads as not paused): nothing stale to show.
    if row is None or not row["paused"]:
        return JobState(job=job, paused=False, paused_by=None, paused_at=None, pause_reason=None,
                        resume_at=None)
    return JobState(**row)  # type: ignore[arg-type]
