"""Logging, configured once by ``python -m bot``: one line per event, as text or JSON.

Events carry fields (``extra=``): job, run_id, trigger, scheduled_for, duration_ms, status,
error; every line also carries the replica (``host:pid``, or Heroku's ``DYNO``). Text lines show
the fields after the message as ``key=value``; ``LOG_FORMAT=json`` gives one JSON object a line.
Whatever a library logs, a configured secret never reaches the output (:class:`RedactSecrets`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
from datetime import UTC, datetime
from typing import Any

FIELDS = ("job", "run_id", "trigger", "scheduled_for", "duration_ms", "status", "error")


def replica_name() -> str:
    return os.environ.get("DYNO") or f"{socket.gethostname()}:{os.getpid()}"


class RedactSecrets(logging.Filter):
    """Last line of defence: a secret's value never reaches the output, and the line says a secret
    was removed from it, so that a test (or an operator) notices the code tried to log one."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        text = record.exc_text or ""
        if record.exc_info and not text:
            text = logging.Formatter().formatException(record.exc_info)
        for name in FIELDS:  # structured fields are output too
            value = getattr(record, name, None)
            if isinstance(value, str) and any(s in value for s in self._secrets):
                for secret in self._secrets:
                    value = value.replace(secret, "[redacted]")
                setattr(record, name, value + " (a secret was redacted from this field)")
        if any(s in message or s in text for s in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "[redacted]")
                text = text.replace(secret, "[redacted]")
            record.msg, record.args = message + " (a secret was redacted from this line)", None
            record.exc_info, record.exc_text = None, text or None
        return True


class AddReplica(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._replica = replica_name()

    def filter(self, record: logging.LogRecord) -> bool:
        record.replica = self._replica
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None}


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def one_line(value: object) -> str:
    """A value from a user or a job, made safe for a text log line: a newline (or any control
    character) in a pause reason must not forge a second line. ``\n`` shows as ``\\n``."""
    text = str(value)
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(m.group(),
                                                                        _escaped(m.group())), text)


def _escaped(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The message and its fields stay on one line; a traceback, appended after, keeps its lines.
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            tail = "  " + " ".join(f"{k}={one_line(v)}" for k, v in fields.items())
            tail += f" replica={getattr(record, 'replica', '')}"
            head, sep, trace = line.partition("\n")  # a traceback goes after the fields' line
            line = head + tail + sep + trace
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "replica": getattr(record, "replica", None),
            **_fields(record),
        }
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, fmt: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(AddReplica())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # APScheduler logs every job start and end at INFO (our runner says what matters); pgserver
    # narrates every pg_ctl call at INFO.
    for chatty in ("apscheduler", "pgserver"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
