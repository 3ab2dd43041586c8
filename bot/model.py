"""Plain data passed between the core and the surfaces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from bot.schedules import Schedule

Trigger = Literal["schedule", "manual", "catch-up", "retry"]
RunStatus = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobContext:
    """What a job is given: the connection of the run's transaction, the named queries, the zone.

    The connection goes back to the pool as it is (no reset: bot.db._keep_as_is), so a job changes
    nothing that outlives the transaction: ``SET LOCAL``/``set_config(…, true)`` rather than
    ``SET``, ``pg_advisory_xact_lock`` rather than ``pg_advisory_lock``, no ``LISTEN``, no temporary
    table without ``ON COMMIT DROP``, no ``WITH HOLD`` cursor."""

    conn: asyncpg.Connection
    queries: Mapping[str, str]
    timezone: ZoneInfo


@dataclass(frozen=True)
class Job:
    """A Python job, as its module declares it (``jobs/foo.py``). ``run`` does the work inside the
    run's transaction and returns a JSON-able result (it is stored with the run and posted to Slack).

    The settings are those of an SQL job's header (SPEC "Jobs, plural"), with the same meaning and
    checks (``bot.catalogue``): ``None`` takes the process-wide default (``FOOJOB_TIMEZONE``,
    ``FOOJOB_TIMEOUT``, ``FOOJOB_NOTIFY``). Durations are ``timedelta`` or text (``"5m"``). The
    configured schedule is the variable ``cron_variable`` when set, else ``default_cron``."""

    name: str
    run: Callable[[JobContext], Awaitable[dict[str, Any]]]
    cron_variable: str | None = None
    default_cron: str = ""
    description: str = ""
    timezone: str | None = None
    timeout: timedelta | str | None = None
    notify: str | None = None
    retries: int = 0
    retry_delay: timedelta | str = "30s"
    channel: str | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    job: str
    trigger: Trigger
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    result: dict[str, Any] | None
    error: str | None
    triggered_by: str | None
    attempt: int = 1

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__ if name in row})


@dataclass(frozen=True)
class JobState:
    job: str
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    pause_reason: str | None
    resume_at: datetime | None
    # The effective schedule, read from the same row (None only where nobody asked for it).
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Status:
    job: str
    state: JobState
    schedule: str
    schedule_text: str
    timezone: str
    next_run_at: datetime | None  # the first fire that will run: None while paused, never the skipped one
    running: bool
    last_run: RunRecord | None
    schedule_source: str = "config"
    skip_next: datetime | None = None
    description: str = ""  # the job's own words (an SQL file's header, a Job's description)
