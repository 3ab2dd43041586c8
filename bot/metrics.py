"""Prometheus metrics, in a registry of the service's own (several services can share a process)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from bot.errors import DatabaseUnavailable
from bot.model import RunRecord

if TYPE_CHECKING:
    from bot.control import Control


class Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("foojob_runs", "Runs by job, trigger and final status",
                            ["job", "trigger", "status"], registry=self.registry)
        self.duration = Histogram("foojob_run_duration_seconds", "Run duration", ["job"],
                                  registry=self.registry,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.paused = Gauge("foojob_paused", "1 while the job's schedule is paused", ["job"],
                            registry=self.registry)
        self.outbox_depth = Gauge("foojob_outbox_depth", "Messages waiting to be delivered to Slack",
                                  registry=self.registry)
        self.outbox_age = Gauge("foojob_outbox_oldest_age_seconds", "Age of the oldest undelivered message",
                                registry=self.registry)
        Info("foojob_build", "Build information", registry=self.registry).info({"version": version})

    def observe_run(self, run: RunRecord) -> None:
        self.runs.labels(run.job, run.trigger, run.status).inc()
        if run.duration is not None:
            self.duration.labels(run.job).observe(run.duration.total_seconds())

    async def render(self, control: Control | None) -> bytes:
        """The text exposition; the paused gauge is read from the database at scrape time."""
        if control is not None:
            for job in control.jobs:
                # On an outage keep the last known value; /healthz reports the outage.
                with contextlib.suppress(DatabaseUnavailable):
                    self.paused.labels(job).set(1 if (await control.state(job)).paused else 0)
            with contextlib.suppress(DatabaseUnavailable):
                depth, age = await control.outbox_depth()
                self.outbox_depth.set(depth)
                self.outbox_age.set(age)

        return generate_latest(self.registry)
