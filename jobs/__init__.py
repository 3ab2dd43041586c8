"""The registry of Python jobs. To add one: a module in this package (plus its SQL in ``sql/``) and a line
here — or, for an SQL job, an ``.sql`` file in this folder (docs/jobs.md)."""

from bot.model import Job
from jobs import foo

JOBS: dict[str, Job] = {job.name: job for job in (foo.JOB,)}

DEFAULT_JOB = "foo"
