"""The product's voice: the messages posted on the webhook — run results, pause and resume,
schedule changes and skips — as Block Kit with a plain-text fallback, within Block Kit's limits.

They go out whether or not the Slack control surface (Socket Mode) is on, so they live below the
core, which stages them; ``bot/slack/`` keeps only what answers a command or a click there.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.model import JobState, RunRecord
from bot.notify import Message
from bot.schedules import Schedule
from bot.timefmt import human_duration, human_time, rfc3339

SECTION_TEXT_MAX = 3000  # Block Kit: a section's text
FALLBACK_TEXT_MAX = 4000  # Slack truncates longer top-level text

RUN_AGAIN_ACTION = "foojob_run_now"
PAUSE_ACTION = "foojob_pause"
RESUME_ACTION = "foojob_resume"


def escape(text: str) -> str:
    """Text from users and jobs, made inert for Slack: ``<!channel>`` must not ping anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    detail = escape(json.dumps(run.result, ensure_ascii=False) if ok else (run.error or "failed"))
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
    error = escape(error)
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
    why = f": {escape(state.pause_reason)}" if state.pause_reason else ""
    text = truncate(f":double_vertical_bar: {state.job} paused by {who(state.paused_by)}{until}{why}",
                    FALLBACK_TEXT_MAX)
    return Message(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                   "text": truncate(text, SECTION_TEXT_MAX)}}])


def resumed_message(job: str, actor: str | None, automatic: bool) -> Message:
    by = "automatically (the pause ran out)" if automatic else f"by {who(actor)}"
    text = f":arrow_forward: {job} resumed {by}"
    return Message(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


def schedule_words(schedule: Schedule) -> str:
    return f"`{schedule.cron}` ({schedule.describe()}, {schedule.timezone})"


def fire_list(fires: list[datetime], tz: ZoneInfo) -> str:
    return "\n".join(f"• {human_time(at, tz)}" for at in fires)


_CHANGE_WORDS = {"schedule-set": "changed", "schedule-reset": "reset to the configured schedule",
                 "schedule-deploy": "changed by a deploy (the configured schedule changed)"}


def schedule_changed_message(old: Schedule, new: Schedule, actor: str, action: str, tz: ZoneInfo) -> Message:
    """Announcement of a schedule change: who, old → new, the next three fires (audit trail)."""
    how = _CHANGE_WORDS.get(action, "changed")
    by = "" if action == "schedule-deploy" else f" by {who(actor)}"
    fires = new.fires(3)
    head = f":calendar: *{new.job}*'s schedule was {how}{by}"
    body = f"{schedule_words(old)}\n→ {schedule_words(new)}"
    text = truncate(f":calendar: {new.job}'s schedule was {how}{by}: {old.cron} ({old.timezone}) → "
                    f"{new.cron} ({new.timezone}), {new.describe()}; next: "
                    + ", ".join(human_time(at, new.tz) for at in fires), FALLBACK_TEXT_MAX)
    return Message(text=text, blocks=[section(head), section(body),
                                      section("*Next fires:*\n" + fire_list(fires, new.tz))])


def skip_message(job: str, actor: str, skipped: datetime, following: datetime, tz: ZoneInfo) -> Message:
    text = (f":fast_forward: {job}: the fire of {human_time(skipped, tz)} will be skipped (by {who(actor)}); "
            f"the next run after it is {human_time(following, tz)}")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])


def unskip_message(job: str, actor: str, unskipped: datetime, tz: ZoneInfo) -> Message:
    text = (f":leftwards_arrow_with_hook: {job}: the fire of {human_time(unskipped, tz)} will run after all "
            f"(skip cleared by {who(actor)})")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT_MAX)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_TEXT_MAX)}]}


def text_message(text: str) -> Message:
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])
