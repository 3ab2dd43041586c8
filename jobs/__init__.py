"""The registry of jobs. To add one: a module in this package (plus its SQL in ``sql/``) and a line here."""

from bot.model import Job
from jobs import foo

JOBS: dict[str, Job] = {job.name: job for job in (foo.JOB,)}

DEFAULT_JOB = "foo"
