"""The job catalogue: the one place that knows every job and how each is set.

Two kinds of job (SPEC "Jobs, plural"):

* **Python jobs**, registered in ``jobs/__init__.py`` (``foo``): their settings are declared on
  :class:`bot.model.Job`, their configured schedule read from the variable they name
  (``FOOJOB_CRON``);
* **SQL jobs**: every ``*.sql`` file directly in ``FOOJOB_JOBS_DIR`` (default: ``jobs/`` of the
  working directory, when it exists), named after the file, opening with ``-- key: value`` header
  lines and then one or more statements, run in the run's transaction (``bot.sqljob``).

The catalogue is built once, at start-up, by ``bot.config`` (the only reader of the environment,
which hands in what it read); every other room is handed a :class:`JobSpec` carrying the job's own
settings, with the process-wide variables (``FOOJOB_TIMEZONE``, ``FOOJOB_TIMEOUT``,
``FOOJOB_NOTIFY``) as defaults. A bad file or declaration raises :class:`ConfigError` naming the
file, the line and the problem: start-up stops with exit status 2.

What it does not do: watch the directory. A file added or changed takes effect at the next start
(a changed header is then a deploy of that job's schedule, as a changed ``FOOJOB_CRON`` is).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bot.cron import CronSchedule
from bot.durations import parse_span
from bot.errors import BadInput, ConfigError
from bot.model import Job, JobContext
from bot.schedules import parse_cron, parse_zone
from bot.sqljob import sql_job_runner
from bot.sqltext import split_statements

Kind = Literal["python", "sql"]
NOTIFY_POLICIES = ("all", "failures", "changes")
JOB_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
MAX_RETRIES = 10
MAX_DESCRIPTION = 200
DEFAULT_RETRY_DELAY = timedelta(seconds=30)
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
# A header line: "-- key: value", the key in lower case. Other comment lines are comments: no
# "word:" after the dashes, a capitalised word ("-- NOTE: …", "-- Why: …"), a URL ("-- https://…").
_HEADER = re.compile(r"^--\s*([a-z][a-z0-9_-]*)\s*:(?!//)(.*)$")
KEYS = ("cron", "timezone", "description", "timeout", "notify", "retries", "retry-delay", "channel")
# Statements that cannot run inside the run's transaction, or would outlive it on a pooled connection.
_REFUSED = {
    "BEGIN": "transaction control: the job already runs in the run's transaction",
    "START": "transaction control: the job already runs in the run's transaction",
    "COMMIT": "transaction control: the run's transaction commits when the job ends",
    "END": "transaction control: the run's transaction commits when the job ends",
    "ABORT": "transaction control: a job that fails is rolled back by itself",
    "VACUUM": "VACUUM cannot run inside a transaction (the run's)",
    "LISTEN": "LISTEN would outlive the run on a pooled connection",
    "PREPARE": "a prepared statement would outlive the run on a pooled connection",
    "DISCARD": "it would reset the pooled connection's session",
    "RESET": "it changes the session beyond the run: use SET LOCAL",
    "LOAD": "it would outlive the run on a pooled connection",
}
# What may change a setting for the rest of the transaction: SET LOCAL, set_config(), SET ROLE…
_SETS_SESSION = re.compile(r"(?is)^\s*set\b|\bset\s+(local|role|session)\b|\bset_config\b")
# Names a job cannot take: they are words of /foojob (`/foojob schedule set …`).
RESERVED = frozenset({"set", "reset", "help"})


@dataclass(frozen=True)
class Defaults:
    """The process-wide settings a job's own settings fall back on."""

    timezone: ZoneInfo = ZoneInfo("UTC")
    timeout: timedelta = timedelta(minutes=10)
    notify: str = "all"


@dataclass(frozen=True)
class JobSpec:
    """A job with every setting resolved: what the runner, the scheduler and the surfaces use."""

    name: str
    kind: Kind
    run: Callable[[JobContext], Awaitable[dict[str, Any]]]
    cron: CronSchedule  # the configured schedule (the effective one lives in the database)
    timezone: ZoneInfo
    origin: str  # where the configured schedule comes from: "FOOJOB_CRON", "jobs/rollup.sql"
    description: str = ""
    timeout: timedelta = timedelta(minutes=10)
    notify: str = "all"
    retries: int = 0
    retry_delay: timedelta = DEFAULT_RETRY_DELAY
    channel: str | None = None
    # An SQL job whose statements may SET LOCAL what the run's own statements depend on (a
    # search_path, a role, a timeout): the runner puts those back before recording the run.
    sets_session: bool = False

    def retry_after(self, attempt: int) -> timedelta:
        """How long after attempt ``attempt`` (1 for the first try) the next one is made: the delay,
        doubling each attempt."""
        return self.retry_delay * (1 << (attempt - 1))


class Catalogue(Mapping[str, JobSpec]):
    """Every job by name, sorted by name; ``default`` is the job the version 1 endpoints act on."""

    def __init__(self, jobs: Mapping[str, JobSpec], default: str) -> None:
        self._jobs = dict(sorted(jobs.items()))
        if default not in self._jobs:
            raise ConfigError("FOOJOB_DEFAULT_JOB", f"no job is named {default[:40]!r} "
                                                    f"(the jobs: {', '.join(self._jobs) or 'none'})")
        self.default = default

    def __getitem__(self, name: str) -> JobSpec:
        return self._jobs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)


def load(python_jobs: Mapping[str, Job], variable: Callable[[str], str | None], jobs_dir: Path | None,
         defaults: Defaults, default_job: str) -> Catalogue:
    """The catalogue: the Python jobs (their schedule variables read through ``variable``) and the
    SQL files of ``jobs_dir`` (None: no SQL jobs). Raises ConfigError on the first problem."""
    jobs: dict[str, JobSpec] = {}
    for job in python_jobs.values():
        jobs[job.name] = python_job(job, variable, defaults)
    if jobs_dir is not None:
        for path in sorted(p for p in jobs_dir.iterdir() if p.suffix == ".sql"):
            if not path.is_file():
                raise ConfigError(_where(path, 1), "is not a file (a directory, or a link to nothing): "
                                                   "a job is a file of SQL")
            spec = sql_job(path, defaults)
            if spec.name in jobs:
                taken = jobs[spec.name]
                where = taken.origin if taken.kind == "sql" else "registered in jobs/__init__.py"
                raise ConfigError(_where(path, 1), f"the name {spec.name!r} is taken by the {taken.kind} job "
                                                   f"{spec.name!r} ({where})")
            jobs[spec.name] = spec
    return Catalogue(jobs, default_job)


def python_job(job: Job, variable: Callable[[str], str | None], defaults: Defaults) -> JobSpec:
    where = f"job {job.name!r}"
    if not JOB_NAME.match(job.name):
        raise ConfigError(where, "a job name is 1-40 characters: a-z first, then a-z, 0-9, _ or -")
    text = (variable(job.cron_variable) if job.cron_variable else None) or job.default_cron
    timezone, timeout, notify, channel = job.timezone, job.timeout, job.notify, job.channel
    if job.cron_variable and variable(job.cron_variable):
        try:
            cron = _cron(text)
        except BadInput as exc:
            raise ConfigError(job.cron_variable, f"not a crontab expression: {str(exc).removeprefix('cron: ')}") \
                from None
    else:
        cron = _setting(where, lambda: _cron(text))
    return JobSpec(
        name=job.name, kind="python", run=job.run, cron=cron,
        timezone=_setting(where, lambda: parse_zone(timezone), "timezone: ") if timezone else defaults.timezone,
        origin=job.cron_variable or f"jobs ({job.name})",
        description=_setting(where, lambda: _description(job.description), "description: "),
        timeout=_setting(where, lambda: _span(timeout), "timeout: ") if timeout is not None else defaults.timeout,
        notify=_setting(where, lambda: _notify(notify), "notify: ") if notify is not None else defaults.notify,
        retries=_setting(where, lambda: _retries(str(job.retries)), "retries: "),
        retry_delay=_setting(where, lambda: _span(job.retry_delay), "retry_delay: "),
        channel=_setting(where, lambda: _channel(channel), "channel: ") if channel is not None else None,
    )


def sql_job(path: Path, defaults: Defaults) -> JobSpec:
    """An SQL job from its file: the header's settings, then the statements."""
    name = path.stem
    if name in RESERVED:
        raise ConfigError(_where(path, 1), f"{name!r} cannot be a job's name: it is a word of /foojob")
    if not JOB_NAME.match(name):
        raise ConfigError(_where(path, 1), f"{name[:60]!r} is not a job name: the file's name (without .sql) "
                                           "is 1-40 characters, a-z first, then a-z, 0-9, _ or -")
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte-order mark is no SQL
    except UnicodeDecodeError:
        raise ConfigError(_where(path, 1), "the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(_where(path, 1), f"cannot be read ({exc.strerror})") from None
    lines = text.splitlines()
    found: dict[str, tuple[int, str]] = {}
    body_from = len(lines)
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            body_from = number - 1
            break
        match = _HEADER.match(stripped)
        if match is None:
            continue  # a comment
        key, value = match.group(1).lower(), match.group(2).strip()
        if key not in KEYS:
            raise ConfigError(_where(path, number), f"unknown key {match.group(1)[:40]!r} "
                              f"(the keys: {', '.join(KEYS)})")
        if key in found:
            raise ConfigError(_where(path, number), f"{key} is given twice (first on line {found[key][0]})")
        if not value:
            raise ConfigError(_where(path, number), f"{key}: no value")
        found[key] = (number, value)
    for number, line in enumerate(lines[body_from:], start=body_from + 1):
        late = _HEADER.match(line.strip())
        if late is not None and late.group(1).lower() in KEYS:
            raise ConfigError(_where(path, number), f"the header line '-- {late.group(1)}:' comes after the SQL: "
                                                    "move it up, above the first statement")
    if "cron" not in found:
        raise ConfigError(_where(path, 1), "no schedule: the file must open with a line such as "
                                           "'-- cron: */15 * * * *'")

    def setting(key: str, read: Callable[[str], Any], default: Any) -> Any:
        if key not in found:
            return default
        number, text = found[key]
        return _setting(_where(path, number), lambda: read(text), f"{key}: ")

    try:
        statements = split_statements("\n".join(lines[body_from:]), first_line=body_from + 1)
    except ValueError as exc:  # "unterminated … starting on line N": that line is the place
        started = re.search(r"line (\d+)", str(exc))
        raise ConfigError(_where(path, int(started.group(1)) if started else body_from + 1), str(exc)) from None
    if not statements:
        raise ConfigError(_where(path, max(body_from, 1)), "no SQL statement after the header")
    for statement in statements:
        why = _REFUSED.get(statement.keyword)
        if statement.keyword == "ROLLBACK" and not re.match(r"(?is)^rollback\s+to\b", statement.text):
            why = "transaction control: a job that fails is rolled back by itself"
        if statement.keyword == "SET" and not re.match(r"(?is)^set\s+(local|constraints)\b", statement.text):
            why = "SET would outlive the run on a pooled connection: use SET LOCAL"
        if statement.keyword == "SET" and re.match(r"(?is)^set\s+(transaction|local\s+transaction_read_only)\b",
                                                   statement.text):
            why = "the run's transaction records the run after the job: it must stay read-write"
        if statement.keyword == "DECLARE" and re.search(r"(?is)\bwith\s+hold\b", statement.text):
            why = "a cursor WITH HOLD would outlive the run on a pooled connection"
        if statement.keyword in ("RELEASE", "ROLLBACK") and re.search(r"(?i)\bfoojob_job\b", statement.text):
            why = "foojob_job is the run's own savepoint"
        if why is not None:
            raise ConfigError(_where(path, statement.line), f"{statement.keyword} is not allowed here: {why}")
    return JobSpec(
        name=name, kind="sql", run=sql_job_runner([s.text for s in statements]),
        sets_session=any(_SETS_SESSION.search(s.text) for s in statements),
        cron=setting("cron", _cron, None),
        timezone=setting("timezone", parse_zone, defaults.timezone),
        origin=_display(path),
        description=setting("description", _description, ""),
        timeout=setting("timeout", _span, defaults.timeout),
        notify=setting("notify", _notify, defaults.notify),
        retries=setting("retries", _retries, 0),
        retry_delay=setting("retry-delay", _span, DEFAULT_RETRY_DELAY),
        channel=setting("channel", _channel, None),
    )


# -- values, checked the same way for a header line and a Job(...) ------------------------------

def _setting(where: str, read: Callable[[], Any], prefix: str = "") -> Any:
    try:
        return read()
    except (BadInput, ValueError) as exc:
        message = str(exc)
        raise ConfigError(where, message if message.startswith(prefix.strip(": ")) else prefix + message) from None


def _cron(text: str) -> CronSchedule:
    return parse_cron(" ".join(text.split()))


def _span(value: timedelta | str) -> timedelta:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise BadInput("must be longer than zero")
        return value
    return parse_span(value)


def _notify(value: str) -> str:
    if value.lower() not in NOTIFY_POLICIES:
        raise BadInput(f"must be one of {', '.join(NOTIFY_POLICIES)}, got {value[:40]!r}")
    return value.lower()


def _retries(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,2}", value) or int(value) > MAX_RETRIES:
        raise BadInput(f"must be a whole number from 0 to {MAX_RETRIES}, got {value[:40]!r}")
    return int(value)


def _channel(value: str) -> str:
    if not _CHANNEL.match(value):
        raise BadInput(f"must be a Slack channel ID such as C0123ABCD, got {value[:40]!r}")
    return value


def _description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION or any(c in value for c in "\x00\r\n"):
        raise BadInput(f"one line of at most {MAX_DESCRIPTION} characters")
    return value


def _display(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _where(path: Path, line: int) -> str:
    return f"{_display(path)}:{line}"
