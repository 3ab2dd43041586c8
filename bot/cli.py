"""The CLI verbs: a thin adapter over the control core, printing text or the API's JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from zoneinfo import ZoneInfo

from bot.control import Control
from bot.durations import parse_pause_words
from bot.errors import BadInput
from bot.messages import who
from bot.model import RunRecord
from bot.schedules import MAX_NEXT, Schedule
from bot.shapes import job_json, run_json, schedule_json, status_json
from bot.timefmt import human_duration, human_time, rfc3339


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _json(value: Any) -> None:
    _out(json.dumps(value, indent=2, ensure_ascii=False))


def _run_line(run: RunRecord, tz: ZoneInfo) -> str:
    detail = json.dumps(run.result, ensure_ascii=False) if run.status == "succeeded" else run.error
    origin = f"for {human_time(run.scheduled_for, tz)}" if run.scheduled_for else f"by {run.triggered_by}"
    attempt = f", attempt {run.attempt}" if run.attempt > 1 else ""
    return (f"#{run.id} {run.job} {human_time(run.started_at, tz)} {run.status} in {human_duration(run.duration)} "
            f"({run.trigger} {origin}{attempt}): {detail}")


async def run(command: str, args: argparse.Namespace, control: Control, tz: ZoneInfo) -> int:
    if command == "jobs":
        return await _jobs(args, control, tz)
    words: list[str] = args.words
    if args.job is None and words and words[0] in control.jobs:
        job, args.words = words[0], words[1:]  # a verb's first word that names a job is the job
    else:
        job = args.job or control.default_job
        # A job the service runs but this command does not know (its file is in the service's
        # FOOJOB_JOBS_DIR, not here): refused, never read as foo's reason or duration.
        named = args.job or (words[0] if args.job is None and words else None)
        if named is not None and named not in control.jobs and named in await control.jobs_on_record():
            raise BadInput(f"{named[:40]!r} is a job of the service, but not of this command: its file is not in "
                           "FOOJOB_JOBS_DIR here; set FOOJOB_JOBS_DIR to the service's jobs folder")
    control.spec(job)  # an unknown job is refused before anything is done
    if command not in ("pause", "schedule", "next") and args.words:
        raise BadInput(f"`{command}` takes a job's name and nothing else: no job is named {args.words[0][:40]!r} "
                       f"(the jobs: {', '.join(control.jobs)})")
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
            until = f" until {human_time(state.resume_at, tz)}" if state.resume_at else " until resumed"
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
            until = f" until {human_time(state.resume_at, tz)}" if state.resume_at else ""
            why = f": {state.pause_reason}" if state.pause_reason else ""
            _out(f"{job}: PAUSED by {who(state.paused_by)} since {human_time(state.paused_at, tz)}{until}{why}")
        else:
            _out(f"{job}: active" + (" (a run is in progress)" if status.running else ""))
        source = (f"configured ({control.spec(job).origin})" if status.schedule_source == "config"
                  else "set at runtime")
        _out(f"schedule: {status.schedule} — {status.schedule_text} ({status.timezone}; {source})")
        if status.skip_next is not None:
            _out(f"skipped: {human_time(status.skip_next, tz)}")
        _out(f"next run: {human_time(status.next_run_at, tz) if status.next_run_at else '— (paused)'}")
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
    if command == "schedule":
        return await _schedule(args, control, job)
    if command == "next":
        if len(args.words) > 1 or (args.words and not (args.words[0].isascii() and args.words[0].isdigit())):
            raise BadInput("usage: next [JOB] [N]: N the number of fire times")
        count = int(args.words[0][:6]) if args.words else 5
        if not 1 <= count <= MAX_NEXT:
            raise BadInput(f"next shows 1 to {MAX_NEXT} fire times")
        schedule = await control.schedule(job)
        fires = schedule.fires(count)
        if args.json:
            _json({"next": [rfc3339(at, schedule.tz) for at in fires]})
        else:
            for at in fires:
                _out(human_time(at, schedule.tz))
        return 0
    if command == "skip":
        instant = await control.skip(job, by="cli")
        zone = (await control.schedule(job)).tz  # one zone an answer: the schedule's, as `next` gives it
        _json({"skipped": rfc3339(instant, zone)}) if args.json else _out(
            f"{job}: the fire of {human_time(instant, zone)} will be skipped")
        return 0
    if command == "unskip":
        cleared = await control.unskip(job, by="cli")
        zone = (await control.schedule(job)).tz
        if args.json:
            _json({"skipped": None})
        else:
            _out(f"{job}: the fire of {human_time(cleared, zone)} will run after all" if cleared
                 else f"{job}: no fire was skipped")
        return 0
    raise AssertionError(command)


async def _jobs(args: argparse.Namespace, control: Control, tz: ZoneInfo) -> int:
    statuses = [(await control.status(name), control.spec(name)) for name in control.jobs]
    if args.json:
        _json({"jobs": [job_json(status, spec, tz) for status, spec in statuses]})
        return 0
    for status, spec in statuses:
        state = "PAUSED" if status.state.paused else "active"
        next_run = human_time(status.next_run_at, tz) if status.next_run_at else "—"
        last = (f"{status.last_run.status} {human_time(status.last_run.started_at, tz)}" if status.last_run
                else "never run")
        _out(f"{spec.name} ({spec.kind}) {state} · {status.schedule} ({status.timezone}) · next {next_run} · "
             f"last {last}" + (f" — {spec.description}" if spec.description else ""))
    return 0


def _origin(schedule: Schedule, control: Control) -> str:
    """Where a schedule comes from, in words: its variable or file for the configured one."""
    config = schedule.source == "config"
    origin = f"configured ({control.spec(schedule.job).origin})" if config else "set at runtime"
    if schedule.set_by is not None:
        origin += f" by {schedule.set_by} at {human_time(schedule.set_at, schedule.tz)}"
    return origin


async def _schedule(args: argparse.Namespace, control: Control, job: str) -> int:
    words: list[str] = args.words
    if not 1 <= args.next <= MAX_NEXT:
        raise BadInput(f"--next takes 1 to {MAX_NEXT}")
    if not words:
        if args.timezone is not None:
            raise BadInput("--timezone goes with `schedule set CRON`")
        schedule = await control.schedule(job)
    elif words[0] == "set" and len(words) > 1:
        schedule = await control.set_schedule(job, " ".join(words[1:]), args.timezone, by="cli")
    elif words == ["reset"] and args.timezone is None:
        schedule = await control.reset_schedule(job, by="cli")
    else:
        raise BadInput("usage: schedule | schedule set CRON [--timezone ZONE] | schedule reset")
    if args.json:
        _json(schedule_json(schedule, args.next))
        return 0
    _out(f"{job}: {schedule.cron} — {schedule.describe()} ({schedule.timezone}); {_origin(schedule, control)}")
    if (skipped := schedule.skipped()) is not None:
        _out(f"skipped: {human_time(skipped, schedule.tz)}")
    _out("next fires:")
    for at in schedule.fires(args.next):
        _out(f"  {human_time(at, schedule.tz)}")
    return 0
