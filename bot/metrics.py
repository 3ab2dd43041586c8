"""Prometheus metrics, in a registry of the service's own (several services can share a process)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from bot.errors import DatabaseUnavailable
from bot.model import JobState, RunRecord


class Readings(Protocol):
    """What a scrape reads (the control core has it); a protocol, so that this low room does not
    import the core that imports it (control -> runner -> metrics)."""

    @property
    def jobs(self) -> list[str]: ...

    async def state(self, job: str) -> JobState: ...

    async def outbox_depth(self) -> tuple[int, float]: ...

    async def health(self, job: str) -> tuple[datetime | None, int]: ...

SlackHealth = Callable[[], Awaitable[str]]


class Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("foojob_runs", "Runs by job, trigger and final status",
                            ["job", "trigger", "status"], registry=self.registry)
        self.duration = Histogram("foojob_run_duration_seconds", "Run duration", ["job"],
                                  registry=self.registry,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.fire_lag = Histogram("foojob_fire_lag_seconds", "Start of a scheduled run minus its fire instant",
                                  ["job"], registry=self.registry,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30))
        self.slack_connected = Gauge("foojob_slack_socket_connected",
                                     "1 while the Slack Socket Mode connection is up, else 0 (also when Slack is off)",
                                     registry=self.registry)
        self.paused = Gauge("foojob_paused", "1 while the job's schedule is paused", ["job"],
                            registry=self.registry)
        self.outbox_depth = Gauge("foojob_outbox_depth", "Messages waiting to be delivered to Slack",
                                  registry=self.registry)
        self.outbox_age = Gauge("foojob_outbox_oldest_age_seconds", "Age of the oldest undelivered message",
                                registry=self.registry)
        self.run_timeouts = Counter("foojob_run_timeouts", "Runs stopped by FOOJOB_TIMEOUT", ["job"],
                                    registry=self.registry)
        self.missed_fires = Counter("foojob_missed_fires", "Fires of the schedule that did not run (reported by "
                                    "this process)", ["job"], registry=self.registry)
        self.last_success = Gauge("foojob_last_success_timestamp_seconds",
                                  "When the job last succeeded (any replica), Unix time", ["job"],
                                  registry=self.registry)
        self.consecutive_failures = Gauge("foojob_consecutive_failures",
                                          "Failed runs since the last success (any replica)", ["job"],
                                          registry=self.registry)
        Info("foojob_build", "Build information", registry=self.registry).info({"version": version})

    def know_jobs(self, jobs: list[str]) -> None:
        """Create each job's counters at 0, so that ``increase()`` sees their first event."""
        for job in jobs:
            self.run_timeouts.labels(job)
            self.missed_fires.labels(job)

    def observe_run(self, run: RunRecord) -> None:
        self.runs.labels(run.job, run.trigger, run.status).inc()
        if run.duration is not None:
            self.duration.labels(run.job).observe(run.duration.total_seconds())
        if run.trigger == "schedule" and run.scheduled_for is not None:
            self.fire_lag.labels(run.job).observe(max(0.0, (run.started_at - run.scheduled_for).total_seconds()))

    async def render(self, control: Readings | None, slack_health: SlackHealth | None) -> bytes:
        """The text exposition; the gauges are read (from the database, the socket) at scrape time."""
        if slack_health is not None:
            self.slack_connected.set(1 if await slack_health() == "connected" else 0)
        if control is not None:
            for job in control.jobs:
                # On an outage keep the last known value; /healthz reports the outage.
                with contextlib.suppress(DatabaseUnavailable):
                    self.paused.labels(job).set(1 if (await control.state(job)).paused else 0)
                    last_success, failures = await control.health(job)
                    self.consecutive_failures.labels(job).set(failures)
                    if last_success is not None:
                        self.last_success.labels(job).set(last_success.timestamp())
            depth: float
            age: float
            try:
                depth, age = await control.outbox_depth()
            except DatabaseUnavailable:
                depth, age = math.nan, math.nan  # unknown, not zero: an empty queue would be a lie
            self.outbox_depth.set(depth)
            self.outbox_age.set(age)

        return generate_latest(self.registry)
