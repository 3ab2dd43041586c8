"""The log filter and formatters: secrets never reach the output, fields included."""

from __future__ import annotations

import io
import json
import logging

from bot.logs import AddReplica, JsonFormatter, RedactSecrets, TextFormatter

SECRET = "xoxb-1-2-NEVERSHOWN"


def emit(formatter: logging.Formatter, *args: object, **extra: object) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets([SECRET]))
    handler.addFilter(AddReplica())
    logger = logging.getLogger(f"test.logs.{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning(*args, extra=extra)  # type: ignore[arg-type]
    return out.getvalue()


def test_a_secret_is_redacted_from_the_message_and_from_every_field() -> None:
    for formatter in (JsonFormatter(), TextFormatter()):
        line = emit(formatter, "run failed: %s", f"token {SECRET}", job="foo", error=f"bad token {SECRET}")
        assert SECRET not in line and "[redacted]" in line
        assert "a secret was redacted from this field" in line


def test_json_lines_carry_the_fields_and_the_replica() -> None:
    entry = json.loads(emit(JsonFormatter(), "run %d done", 7, job="foo", run_id=7, trigger="manual",
                            duration_ms=1.5, status="succeeded"))
    assert entry["message"] == "run 7 done" and entry["level"] == "warning"
    assert {k: entry[k] for k in ("job", "run_id", "trigger", "duration_ms", "status")} == {
        "job": "foo", "run_id": 7, "trigger": "manual", "duration_ms": 1.5, "status": "succeeded"}
    assert entry["replica"]
