"""The package's exceptions: one root, subclasses carrying data. Surfaces choose the wording."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.model import RunRecord


class FoojobError(Exception):
    """Root of every error foojob raises on purpose."""


class ConfigError(FoojobError):
    """An environment variable has a bad value. ``str()`` names the variable, never its value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class CronError(FoojobError, ValueError):
    """A crontab expression that cannot be read."""


class BadInput(FoojobError, ValueError):
    """A request a surface passed on is malformed (a duration, a limit, a job name)."""


class UnknownJob(BadInput):
    def __init__(self, job: str) -> None:
        super().__init__(f"unknown job {job!r}")
        self.job = job


class AlreadyRunning(FoojobError):
    """A run of the job is in progress somewhere (this process or another replica)."""

    def __init__(self, job: str) -> None:
        super().__init__(f"job {job!r} is already running")
        self.job = job


class JobFailed(FoojobError):
    """The job raised; the run was recorded as failed."""

    def __init__(self, run: RunRecord) -> None:
        super().__init__(run.error or "job failed")
        self.run = run


class DatabaseUnavailable(FoojobError):
    """PostgreSQL could not be reached or the connection broke."""


class Conflict(FoojobError):
    """The request cannot be done in the job's present state (skip while paused: nothing to skip)."""
