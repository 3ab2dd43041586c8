"""The JSON shapes of the model, shared by the HTTP API and the CLI's ``--json`` (camelCase keys,
times in RFC 3339): a surface never borrows them from another surface."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from bot.catalogue import JobSpec
from bot.model import RunRecord, Status
from bot.schedules import Schedule
from bot.timefmt import rfc3339


def run_json(run: RunRecord, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job,
        "trigger": run.trigger,
        "scheduledFor": rfc3339(run.scheduled_for, tz),
        "startedAt": rfc3339(run.started_at, tz),
        "finishedAt": rfc3339(run.finished_at, tz),
        "status": run.status,
        "result": run.result,
        "error": run.error,
        "triggeredBy": run.triggered_by,
        "attempt": run.attempt,
    }


def status_json(status: Status, tz: ZoneInfo) -> dict[str, Any]:
    state = status.state
    return {
        "job": status.job,
        "paused": state.paused,
        "pausedBy": state.paused_by,
        "pausedAt": rfc3339(state.paused_at, tz),
        "pauseReason": state.pause_reason,
        "resumeAt": rfc3339(state.resume_at, tz),
        "schedule": status.schedule,
        "scheduleDescription": status.schedule_text,
        "timezone": status.timezone,
        "nextRunAt": rfc3339(status.next_run_at, tz),
        "running": status.running,
        "lastRun": run_json(status.last_run, tz) if status.last_run else None,
        "scheduleSource": status.schedule_source,
        "skipNext": rfc3339(status.skip_next, tz),
    }


def schedule_json(schedule: Schedule, count: int = 5) -> dict[str, Any]:
    """GET /schedule's object; times in the schedule's own zone."""
    return {
        "job": schedule.job,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "description": schedule.describe(),
        "source": schedule.source,
        "setBy": schedule.set_by,
        "setAt": rfc3339(schedule.set_at, schedule.tz),
        "next": [rfc3339(at, schedule.tz) for at in schedule.fires(count)],
    }


def job_json(status: Status, spec: JobSpec, tz: ZoneInfo) -> dict[str, Any]:
    """A job in ``GET /jobs`` and ``foojob jobs --json``: its status object, what it is, and its
    own settings."""
    return {**status_json(status, tz), "description": spec.description, "kind": spec.kind,
            "timeout": int(spec.timeout.total_seconds()), "notify": spec.notify, "retries": spec.retries,
            "retryDelay": int(spec.retry_delay.total_seconds()), "channel": spec.channel}
