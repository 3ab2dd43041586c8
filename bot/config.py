"""Settings from the environment: read once, validated once, passed in.

This is the only module that reads ``os.environ``. A bad value raises :class:`ConfigError`, which
names the variable and never repeats a secret's value; ``python -m bot`` turns it into one line on
stderr and exit status 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot import catalogue
from bot.catalogue import NOTIFY_POLICIES, Catalogue, Defaults
from bot.db import DEFAULT_POOL_SIZE
from bot.durations import parse_span
from bot.errors import BadInput, ConfigError
from jobs import DEFAULT_JOB, JOBS


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    database_url: Secret | None
    data_dir: Path
    jobs: Catalogue  # every job, with its own settings (bot.catalogue)
    timezone: ZoneInfo
    slack_bot_token: Secret | None
    slack_app_token: Secret | None
    slack_webhook_url: Secret | None
    slack_api_url: str
    slack_allowed_users: frozenset[str]  # the operators: user IDs and user group IDs (S…)
    host: str
    port: int
    control_api_token: Secret | None
    log_level: str
    log_format: str
    misfire_grace: timedelta
    # Watching the job (SPEC "Watching the job"); defaults so that tests may build Settings by hand.
    timeout: timedelta = timedelta(minutes=10)
    notify: str = "all"
    alert_after: int = 3
    alert_mention: str | None = None
    late_after: timedelta = timedelta(minutes=1)
    heartbeat_url: Secret | None = None
    keep_runs: timedelta = timedelta(days=90)
    database_pool_size: int = DEFAULT_POOL_SIZE
    slack_schedulers: frozenset[str] = frozenset()  # empty: the operators
    slack_channel: str | None = None  # results through the Web API to this channel (a card per run)

    def secrets(self) -> list[str]:
        """The values that must never be shown (for the log filter)."""
        values = [self.slack_bot_token, self.slack_app_token, self.slack_webhook_url, self.control_api_token,
                  self.heartbeat_url]
        found = [v.reveal() for v in values if v is not None]
        if self.database_url is not None:
            password = urlsplit(self.database_url.reveal()).password
            found += [self.database_url.reveal(), *([password] if password and len(password) > 3 else [])]
        return found

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None and self.slack_app_token is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build and validate the settings; raise :class:`ConfigError` on the first bad variable."""
        source = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = source.get(name, "").strip()
            return value or None  # an empty variable means unset, as platforms often leave them

        bot_token = _token(get("SLACK_BOT_TOKEN"), "SLACK_BOT_TOKEN", "xoxb-")
        app_token = _token(get("SLACK_APP_TOKEN"), "SLACK_APP_TOKEN", "xapp-")
        if (bot_token is None) != (app_token is None):
            missing = "SLACK_APP_TOKEN" if app_token is None else "SLACK_BOT_TOKEN"
            other = "SLACK_BOT_TOKEN" if app_token is None else "SLACK_APP_TOKEN"
            raise ConfigError(missing, f"must be set too when {other} is set (Socket Mode needs both)")

        timezone = _zone(get("FOOJOB_TIMEZONE") or "UTC")
        timeout = _span(get("FOOJOB_TIMEOUT") or "10m", "FOOJOB_TIMEOUT")
        notify = _choice(get("FOOJOB_NOTIFY") or "all", "FOOJOB_NOTIFY", NOTIFY_POLICIES)
        jobs = catalogue.load(JOBS, get, _jobs_dir(get("FOOJOB_JOBS_DIR")), Defaults(timezone, timeout, notify),
                              get("FOOJOB_DEFAULT_JOB") or DEFAULT_JOB)
        return cls(
            database_url=_database_url(get("DATABASE_URL")),
            data_dir=Path(get("FOOJOB_DATA_DIR") or "./.data"),
            jobs=jobs,
            timezone=timezone,
            slack_bot_token=bot_token,
            slack_app_token=app_token,
            slack_webhook_url=_webhook(get("SLACK_WEBHOOK_URL")),
            slack_api_url=_api_url(get("SLACK_API_URL") or "https://slack.com/api/"),
            slack_allowed_users=_users(get("SLACK_ALLOWED_USERS"), "SLACK_ALLOWED_USERS"),
            slack_schedulers=_users(get("SLACK_SCHEDULERS"), "SLACK_SCHEDULERS"),
            slack_channel=_slack_channel(get("SLACK_CHANNEL"), bot_token, jobs),
            host=_host(get("HOST") or "0.0.0.0"),
            port=_port(get("PORT") or "8080"),
            control_api_token=_control_token(get("CONTROL_API_TOKEN")),
            log_level=_log_level(get("LOG_LEVEL") or "INFO"),
            log_format=_log_format(get("LOG_FORMAT") or "text"),
            misfire_grace=_grace(get("FOOJOB_MISFIRE_GRACE") or "1h"),
            timeout=timeout,
            notify=notify,
            alert_after=_count(get("FOOJOB_ALERT_AFTER") or "3", "FOOJOB_ALERT_AFTER"),
            alert_mention=_mention(get("FOOJOB_ALERT_MENTION")),
            late_after=_span(get("FOOJOB_LATE_AFTER") or "1m", "FOOJOB_LATE_AFTER"),
            heartbeat_url=_ping_url(get("FOOJOB_HEARTBEAT_URL")),
            keep_runs=_keep_runs(get("FOOJOB_KEEP_RUNS") or "90d"),
            database_pool_size=_pool_size(get("DATABASE_POOL_SIZE") or str(DEFAULT_POOL_SIZE)),
        )


def _split(value: str, variable: str) -> SplitResult:
    try:
        return urlsplit(value)
    except ValueError:
        raise ConfigError(variable, "is not a well-formed URL") from None


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _database_url(value: str | None) -> Secret | None:
    if value is None:
        return None
    parts = _split(value, "DATABASE_URL")
    sslmode = parse_qs(parts.query).get("sslmode", ["prefer"])[-1]
    if sslmode not in _SSLMODES:
        raise ConfigError("DATABASE_URL", f"sslmode must be one of {', '.join(_SSLMODES)}")
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL", "must be a postgres:// or postgresql:// URL")
    if not (parts.netloc or "host=" in parts.query):
        raise ConfigError("DATABASE_URL", "has no host (postgresql://user@host:5432/dbname)")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError("DATABASE_URL", "has a port that is not a number") from None
    return Secret(value)


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


def _slack_channel(value: str | None, bot_token: Secret | None, jobs: Catalogue) -> str | None:
    """SLACK_CHANNEL: a channel ID; it (and a job's ``channel``) posts with the bot token."""
    if value is not None and not _CHANNEL_ID.match(value):
        raise ConfigError("SLACK_CHANNEL", f"must be a Slack channel ID such as C0123ABCD (the channel's details "
                                           f"show it), got {value[:40]!r}")
    if bot_token is None:
        if value is not None:
            raise ConfigError("SLACK_CHANNEL", "needs SLACK_BOT_TOKEN (and SLACK_APP_TOKEN): the bot posts there")
        for spec in jobs.values():
            if spec.channel is not None:
                raise ConfigError(spec.origin, f"channel {spec.channel} needs SLACK_BOT_TOKEN (and SLACK_APP_TOKEN): "
                                               "the bot posts there")
    return value


def _jobs_dir(value: str | None) -> Path | None:
    """FOOJOB_JOBS_DIR, else ``jobs/`` of the working directory when there is one (None: no SQL jobs)."""
    if value is None:
        default = Path("jobs")
        return default if default.is_dir() else None
    path = Path(value)
    if not path.is_dir():
        raise ConfigError("FOOJOB_JOBS_DIR", f"{value[:80]!r} is not a directory (the folder of the *.sql jobs)")
    return path


def _zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("FOOJOB_TIMEZONE", f"unknown IANA time zone {value!r} (e.g. UTC, Asia/Tokyo)") from None


def _token(value: str | None, variable: str, prefix: str) -> Secret | None:
    if value is None:
        return None
    if not value.startswith(prefix) or len(value) <= len(prefix):
        raise ConfigError(variable, f"must be a token starting with {prefix}")
    return Secret(value)


def _webhook(value: str | None) -> Secret | None:
    if value is None:
        return None
    parts = _split(value, "SLACK_WEBHOOK_URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("SLACK_WEBHOOK_URL", "must be an http(s) URL such as https://hooks.slack.com/services/…")
    return Secret(value)


def _api_url(value: str) -> str:
    parts = _split(value, "SLACK_API_URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("SLACK_API_URL", f"must be an http:// or https:// URL, got {value!r}")
    return value if value.endswith("/") else value + "/"


_USER_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")


def _users(value: str | None, variable: str) -> frozenset[str]:
    """User IDs (U…, W…) and user group IDs (S…), comma-separated."""
    if value is None:
        return frozenset()
    users = [u.strip() for u in value.split(",") if u.strip()]
    for user in users:
        if not _USER_ID.match(user):
            raise ConfigError(variable, f"{user[:40]!r} is not a Slack user ID (like U012ABCDEF) nor a user group ID "
                                        "(like S012ABCDEF)")
    return frozenset(users)


def _port(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 0 <= int(value) <= 65535:
        raise ConfigError("PORT", f"must be a number from 0 to 65535, got {value!r}")
    return int(value)


def _host(value: str) -> str:
    if any(c.isspace() for c in value) or "/" in value:
        raise ConfigError("HOST", f"must be an address or a host name such as 0.0.0.0 or 127.0.0.1, got {value!r}")
    return value


def _control_token(value: str | None) -> Secret | None:
    if value is None:
        return None
    if len(value) < 16 or any(c.isspace() for c in value):
        raise ConfigError("CONTROL_API_TOKEN", "must be at least 16 characters with no spaces")
    return Secret(value)


def _log_format(value: str) -> str:
    if value.lower() not in ("text", "json"):
        raise ConfigError("LOG_FORMAT", f"must be text or json, got {value!r}")
    return value.lower()


def _grace(value: str) -> timedelta:
    if value == "0":
        return timedelta(0)
    try:
        return parse_span(value)
    except BadInput as exc:
        raise ConfigError("FOOJOB_MISFIRE_GRACE", f"{exc} (or 0 for no catch-up)") from None


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


def _span(value: str, variable: str) -> timedelta:
    try:
        return parse_span(value)
    except BadInput as exc:
        raise ConfigError(variable, str(exc)) from None


MIN_KEEP_RUNS = timedelta(hours=1)


def _keep_runs(value: str) -> timedelta:
    """FOOJOB_KEEP_RUNS, an hour at least: a fire may arrive 30 s late and wait 30 s for a run in
    progress, and the run that proves it ran (or the report that it was missed) must still be there
    then, or the fire would run a second time."""
    keep = _span(value, "FOOJOB_KEEP_RUNS")
    if keep < MIN_KEEP_RUNS:
        raise ConfigError("FOOJOB_KEEP_RUNS", f"must be at least 1h (got {value[:40]!r}): retention must never delete "
                                              "the record that proves a fire ran while that fire can still arrive")
    return keep


def _choice(value: str, variable: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise ConfigError(variable, f"must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value.lower()


def _count(value: str, variable: str) -> int:
    if not re.fullmatch(r"[0-9]{1,4}", value) or int(value) < 1:
        raise ConfigError(variable, f"must be a whole number from 1 to 9999, got {value[:40]!r}")
    return int(value)


def _pool_size(value: str) -> int:
    # At most 100: PostgreSQL's default max_connections is 100, for every client together.
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= 100:
        raise ConfigError("DATABASE_POOL_SIZE", f"must be a whole number from 1 to 100, got {value[:40]!r}")
    return int(value)


_MENTION = re.compile(r"^<(?:@[UW][A-Z0-9]{2,}|!subteam\^S[A-Z0-9]{2,}(?:\|[^<>]*)?|!channel|!here)>$")


def _mention(value: str | None) -> str | None:
    if value is None:
        return None
    if not _MENTION.match(value):
        raise ConfigError("FOOJOB_ALERT_MENTION",
                          "must be a Slack mention as Slack writes them: <@U012AB3CD>, <!subteam^S012AB3CD> or "
                          f"<!channel>, got {value[:40]!r}")
    return value


def _ping_url(value: str | None) -> Secret | None:
    if value is None:
        return None
    parts = _split(value, "FOOJOB_HEARTBEAT_URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("FOOJOB_HEARTBEAT_URL", "must be an http(s) ping URL such as https://hc-ping.com/<uuid>")
    return Secret(value.rstrip("/"))
