"""The CLI verbs: a thin adapter over the control core, printing text or the API's JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from zoneinfo import ZoneInfo

from bot.control import Control
from bot.durations import parse_pause_words
from bot.http import run_json, status_json
from bot.model import RunRecord
from bot.slack.blocks import who
from bot.timefmt import human_duration, rfc3339


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _json(value: Any) -> None:
    _out(json.dumps(value, indent=2, ensure_ascii=False))


def _run_line(run: RunRecord, tz: ZoneInfo) -> str:
    detail = json.dumps(run.result, ensure_ascii=False) if run.status == "succeeded" else run.error
    origin = f"for {rfc3339(run.scheduled_for, tz)}" if run.scheduled_for else f"by {run.triggered_by}"
    return (f"#{run.id} {rfc3339(run.started_at, tz)} {run.status} in {human_duration(run.duration)} "
            f"({run.trigger} {origin}): {detail}")


async def run(command: str, args: argparse.Namespace, control: Control, tz: ZoneInfo) -> int:
    job: str = args.job
    if command == "run-now":
        record = await control.run_now(job, by="cli")
        if args.json:
            _json(run_json(record, tz))
        else:
            _out(_run_line(record, tz))
        return 0 if record.status == "succeeded" else 1
    if command == "pause":
        duration, reason = parse_pause_words(args.words)
        state = await control.pause(job, by="cli", duration=duration, reason=reason)
        if args.json:
            _json({"message": "ok"})
        else:
            until = f" until {rfc3339(state.resume_at, tz)}" if state.resume_at else " until resumed"
            _out(f"{job} paused{until}" + (f" ({reason})" if reason else ""))
        return 0
    if command == "resume":
        changed = await control.resume(job, by="cli")
        _json({"message": "ok"}) if args.json else _out(f"{job} resumed" if changed else f"{job} was not paused")
        return 0
    if command == "status":
        status = await control.status(job)
        if args.json:
            _json(status_json(status, tz))
            return 0
        state = status.state
        if state.paused:
            until = f" until {rfc3339(state.resume_at, tz)}" if state.resume_at else ""
            why = f": {state.pause_reason}" if state.pause_reason else ""
            _out(f"{job}: PAUSED by {who(state.paused_by)} since {rfc3339(state.paused_at, tz)}{until}{why}")
        else:
            _out(f"{job}: active" + (" (a run is in progress)" if status.running else ""))
        _out(f"schedule: {status.schedule} — {status.schedule_text} ({status.timezone})")
        _out(f"next run: {rfc3339(status.next_run_at, tz) or '— (paused)'}")
        _out(f"last run: {_run_line(status.last_run, tz) if status.last_run else 'none yet'}")
        return 0
    if command == "history":
        records = await control.history(job, args.limit)
        if args.json:
            _json({"runs": [run_json(r, tz) for r in records]})
        else:
            for record in records:
                _out(_run_line(record, tz))
            if not records:
                _out("no runs yet")
        return 0
    raise AssertionError(command)
