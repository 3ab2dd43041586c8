"""Configuration: each bad variable stops start-up with exit status 2 and one line naming it."""

from __future__ import annotations

import pytest

from bot.config import Secret, Settings
from tests.conftest import run_cli

BOT = "xoxb-1111-2222-SECRETBOT"
APP = "xapp-1-A111-SECRETAPP"
HOOK = "https://hooks.slack.com/services/T000/B000/SECRETHOOK"

BAD = [
    ("FOOJOB_CRON", {"FOOJOB_CRON": "61 * * * *"}, "minute: 61 is outside 0-59"),
    ("FOOJOB_CRON", {"FOOJOB_CRON": "every day"}, "expected 5 fields"),
    ("FOOJOB_TIMEZONE", {"FOOJOB_TIMEZONE": "Mars/Olympus"}, "unknown IANA time zone"),
    ("DATABASE_URL", {"DATABASE_URL": "mysql://u:SECRETPW@h/db"}, "postgres:// or postgresql://"),
    ("DATABASE_URL", {"DATABASE_URL": "postgresql://u:SECRETPW@h:port/db"}, "port"),
    ("DATABASE_URL", {"DATABASE_URL": "postgresql://u:SECRETPW@[h/db"}, "not a well-formed URL"),
    ("DATABASE_URL", {"DATABASE_URL": "postgresql://u:SECRETPW@h/db?sslmode=bogus"}, "sslmode must be"),
    ("SLACK_BOT_TOKEN", {"SLACK_BOT_TOKEN": "xoxp-SECRETUSERTOKEN", "SLACK_APP_TOKEN": APP}, "xoxb-"),
    ("SLACK_APP_TOKEN", {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": "xoxb-SECRETWRONGKIND"}, "xapp-"),
    ("SLACK_APP_TOKEN", {"SLACK_BOT_TOKEN": BOT}, "must be set too"),
    ("SLACK_BOT_TOKEN", {"SLACK_APP_TOKEN": APP}, "must be set too"),
    ("SLACK_WEBHOOK_URL", {"SLACK_WEBHOOK_URL": "hooks.slack.com/services/SECRETHOOK"}, "http(s) URL"),
    ("SLACK_WEBHOOK_URL", {"SLACK_WEBHOOK_URL": "https://[hooks/SECRETHOOK"}, "not a well-formed URL"),
    ("SLACK_API_URL", {"SLACK_API_URL": "ftp://slack.example/api"}, "http:// or https://"),
    ("SLACK_ALLOWED_USERS", {"SLACK_ALLOWED_USERS": "U012AB,bob"}, "'bob' is not a Slack user ID"),
    ("PORT", {"PORT": "http"}, "0 to 65535"),
    ("PORT", {"PORT": "70000"}, "0 to 65535"),
    ("PORT", {"PORT": "²"}, "0 to 65535"),
    ("HOST", {"HOST": "local host"}, "address or a host name"),
    ("CONTROL_API_TOKEN", {"CONTROL_API_TOKEN": "SECRET"}, "at least 16 characters"),
    ("LOG_LEVEL", {"LOG_LEVEL": "LOUD"}, "DEBUG, INFO"),
    ("LOG_FORMAT", {"LOG_FORMAT": "xml"}, "text or json"),
    ("FOOJOB_MISFIRE_GRACE", {"FOOJOB_MISFIRE_GRACE": "soon"}, "not a duration"),
    ("FOOJOB_TIMEOUT", {"FOOJOB_TIMEOUT": "0s"}, "longer than zero"),
    ("FOOJOB_TIMEOUT", {"FOOJOB_TIMEOUT": "ten"}, "not a duration"),
    ("FOOJOB_NOTIFY", {"FOOJOB_NOTIFY": "some"}, "all, failures, changes"),
    ("FOOJOB_ALERT_AFTER", {"FOOJOB_ALERT_AFTER": "0"}, "whole number"),
    ("FOOJOB_ALERT_MENTION", {"FOOJOB_ALERT_MENTION": "@oncall"}, "Slack mention"),
    ("FOOJOB_LATE_AFTER", {"FOOJOB_LATE_AFTER": "-1m"}, "not a duration"),
    ("DATABASE_POOL_SIZE", {"DATABASE_POOL_SIZE": "0"}, "from 1 to 100"),
    ("DATABASE_POOL_SIZE", {"DATABASE_POOL_SIZE": "many"}, "from 1 to 100"),
    ("DATABASE_POOL_SIZE", {"DATABASE_POOL_SIZE": "500"}, "from 1 to 100"),
    ("FOOJOB_HEARTBEAT_URL", {"FOOJOB_HEARTBEAT_URL": "hc-ping.com/SECRETUUID"}, "http(s) ping URL"),
    ("FOOJOB_KEEP_RUNS", {"FOOJOB_KEEP_RUNS": "forever"}, "not a duration"),
    # A run deleted while its fire can still arrive late (30 s, then 30 s waiting for a run in
    # progress) would let that fire run a second time: refused below an hour.
    ("FOOJOB_KEEP_RUNS", {"FOOJOB_KEEP_RUNS": "1s"}, "must be at least 1h"),
    ("FOOJOB_KEEP_RUNS", {"FOOJOB_KEEP_RUNS": "59m"}, "must be at least 1h"),
]


@pytest.mark.parametrize(("variable", "env", "problem"), BAD, ids=[f"{v}-{p[:12]}" for v, _, p in BAD])
def test_bad_variable_exits_2_with_one_line_naming_it(variable: str, env: dict[str, str], problem: str) -> None:
    result = run_cli(**env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"foojob: configuration error: {variable}: "), lines[0]
    assert problem in lines[0]
    assert "SECRET" not in result.stderr + result.stdout  # the value of a secret is never repeated
    assert result.stdout == ""


def test_a_bad_variable_is_caught_before_anything_starts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The embedded database would be created under FOOJOB_DATA_DIR if start-up went that far.
    result = run_cli(FOOJOB_DATA_DIR=str(tmp_path / "data"), FOOJOB_TIMEZONE="Nowhere/Land")
    assert result.returncode == 2
    assert not (tmp_path / "data").exists()


def test_defaults_and_empty_values_mean_unset() -> None:
    settings = Settings.from_env({"SLACK_WEBHOOK_URL": "", "PORT": ""})
    assert settings.database_url is None
    assert settings.slack_webhook_url is None
    assert settings.port == 8080 and settings.host == "0.0.0.0"
    assert settings.jobs["foo"].cron.text == "1 0 * * *" and settings.jobs.default == "foo"
    assert settings.timezone.key == "UTC"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert not settings.slack_enabled
    assert settings.database_pool_size == 5


def test_secrets_never_show_in_repr_or_str() -> None:
    settings = Settings.from_env({
        "SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP, "SLACK_WEBHOOK_URL": HOOK,
        "CONTROL_API_TOKEN": "SECRET-control-token-123", "DATABASE_URL": "postgresql://u:SECRETPW@db/x",
        "SLACK_API_URL": "http://127.0.0.1:9/api", "SLACK_ALLOWED_USERS": "U012AB, W0XYZ",
    })
    assert settings.slack_enabled
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings)
    assert settings.slack_bot_token == Secret(BOT) and settings.slack_bot_token.reveal() == BOT
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.slack_allowed_users == frozenset({"U012AB", "W0XYZ"})
