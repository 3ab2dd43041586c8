"""Block Kit messages, each with a plain-text fallback, within Block Kit's limits."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.model import JobState, RunRecord
from bot.notify import Message
from bot.timefmt import human_duration, rfc3339

SECTION_TEXT_MAX = 3000  # Block Kit: a section's text
FALLBACK_TEXT_MAX = 4000  # Slack truncates longer top-level text

RUN_AGAIN_ACTION = "foojob_run_now"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def who(actor: str | None) -> str:
    """A Slack user ID becomes a mention; ``http``/``cli`` stay words; None is the scheduler."""
    if actor is None:
        return "the scheduler"
    if actor[:1] in ("U", "W") and actor.isalnum():
        return f"<@{actor}>"
    return actor


def _code(text: str) -> str:
    return "```" + truncate(text, SECTION_TEXT_MAX - 6).replace("```", "ˋˋˋ") + "```"


def run_result_message(run: RunRecord, tz: ZoneInfo) -> Message:
    ok = run.status == "succeeded"
    icon = ":white_check_mark:" if ok else ":x:"
    when = rfc3339(run.scheduled_for, tz) if run.scheduled_for else None
    origin = f"{run.trigger} for {when}" if when else f"{run.trigger} by {who(run.triggered_by)}"
    detail = json.dumps(run.result, ensure_ascii=False) if ok else (run.error or "failed")
    text = truncate(f"{icon} {run.job} {run.status} in {human_duration(run.duration)} "
                    f"(run #{run.id}, {origin}): {detail}", FALLBACK_TEXT_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            f"{icon} *{run.job}* {run.status} in {human_duration(run.duration)}", SECTION_TEXT_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _code(detail)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(
            f"run #{run.id} · {origin} · started {rfc3339(run.started_at, tz)}", SECTION_TEXT_MAX)}]},
    ]
    if not ok:
        blocks.append(_run_again(run.job))
    return Message(text=text, blocks=blocks)


def run_unrecorded_message(job: str, trigger: str, scheduled_for: datetime | None, error: str,
                           tz: ZoneInfo) -> Message:
    """A run that failed before it could be recorded (the database is unreachable)."""
    origin = f"{trigger} for {rfc3339(scheduled_for, tz)}" if scheduled_for else trigger
    text = truncate(f":x: {job} failed ({origin}), not recorded: {error}", FALLBACK_TEXT_MAX)
    return Message(text=text, blocks=[
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            f":x: *{job}* failed ({origin}); the run could not be recorded", SECTION_TEXT_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _code(error)}},
        _run_again(job),
    ])


def _run_again(job: str) -> dict[str, Any]:
    return {"type": "actions", "elements": [{
        "type": "button", "action_id": RUN_AGAIN_ACTION, "value": job, "style": "primary",
        "text": {"type": "plain_text", "text": "Run again"},
    }]}


def paused_message(state: JobState, tz: ZoneInfo) -> Message:
    until = f" until {rfc3339(state.resume_at, tz)}" if state.resume_at else ""
    why = f": {state.pause_reason}" if state.pause_reason else ""
    text = truncate(f":double_vertical_bar: {state.job} paused by {who(state.paused_by)}{until}{why}",
                    FALLBACK_TEXT_MAX)
    return Message(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                   "text": truncate(text, SECTION_TEXT_MAX)}}])


def resumed_message(job: str, actor: str | None, automatic: bool) -> Message:
    by = "automatically (the pause ran out)" if automatic else f"by {who(actor)}"
    text = f":arrow_forward: {job} resumed {by}"
    return Message(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
