"""Block Kit messages, each with a plain-text fallback, within Block Kit's limits."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.model import JobState, RunRecord, Status
from bot.notify import Message
from bot.schedules import Schedule
from bot.timefmt import human_duration, human_time, rfc3339

SECTION_TEXT_MAX = 3000  # Block Kit: a section's text
FALLBACK_TEXT_MAX = 4000  # Slack truncates longer top-level text

RUN_AGAIN_ACTION = "foojob_run_now"


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


def _schedule_words(schedule: Schedule) -> str:
    return f"`{schedule.cron}` ({schedule.describe()}, {schedule.timezone})"


def _fire_list(fires: list[datetime], tz: ZoneInfo) -> str:
    return "\n".join(f"• {human_time(at, tz)}" for at in fires)


_CHANGE_WORDS = {"schedule-set": "changed", "schedule-reset": "reset to the configured schedule",
                 "schedule-deploy": "changed by a deploy (the configured schedule changed)"}


def schedule_changed_message(old: Schedule, new: Schedule, actor: str, action: str, tz: ZoneInfo) -> Message:
    """Announcement of a schedule change: who, old → new, the next three fires (audit trail)."""
    how = _CHANGE_WORDS.get(action, "changed")
    by = "" if action == "schedule-deploy" else f" by {who(actor)}"
    fires = new.fires(3)
    head = f":calendar: *{new.job}*'s schedule was {how}{by}"
    body = f"{_schedule_words(old)}\n→ {_schedule_words(new)}"
    text = truncate(f":calendar: {new.job}'s schedule was {how}{by}: {old.cron} ({old.timezone}) → "
                    f"{new.cron} ({new.timezone}), {new.describe()}; next: "
                    + ", ".join(human_time(at, new.tz) for at in fires), FALLBACK_TEXT_MAX)
    return Message(text=text, blocks=[_section(head), _section(body),
                                      _section("*Next fires:*\n" + _fire_list(fires, new.tz))])


def skip_message(job: str, actor: str, skipped: datetime, following: datetime, tz: ZoneInfo) -> Message:
    text = (f":fast_forward: {job}: the fire of {human_time(skipped, tz)} will be skipped (by {who(actor)}); "
            f"the next run after it is {human_time(following, tz)}")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[_section(text)])


def unskip_message(job: str, actor: str, unskipped: datetime, tz: ZoneInfo) -> Message:
    text = (f":leftwards_arrow_with_hook: {job}: the fire of {human_time(unskipped, tz)} will run after all "
            f"(skip cleared by {who(actor)})")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[_section(text)])


# -- replies and views of the Slack surface -----------------------------------------------------

PAUSE_ACTION = "foojob_pause"
RESUME_ACTION = "foojob_resume"
APPLY_SCHEDULE_ACTION = "foojob_schedule_apply"
CANCEL_SCHEDULE_ACTION = "foojob_schedule_cancel"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT_MAX)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_TEXT_MAX)}]}


def text_message(text: str) -> Message:
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[_section(text)])


def _run_line(run: RunRecord, tz: ZoneInfo) -> str:
    icon = ":white_check_mark:" if run.status == "succeeded" else ":x:"
    detail = escape(json.dumps(run.result, ensure_ascii=False) if run.status == "succeeded" else (run.error or ""))
    origin = "schedule" if run.trigger == "schedule" else f"{run.trigger} by {who(run.triggered_by)}"
    return truncate(f"{icon} #{run.id} {rfc3339(run.started_at, tz)} · {human_duration(run.duration)} · "
                    f"{origin} · `{truncate(detail, 200)}`", 600)


def status_blocks(status: Status, tz: ZoneInfo) -> list[dict[str, Any]]:
    state = status.state
    if state.paused:
        until = f" until {rfc3339(state.resume_at, tz)}" if state.resume_at else " until resumed"
        why = f"\n>{escape(state.pause_reason)}" if state.pause_reason else ""
        head = (f":double_vertical_bar: *{status.job}* is *paused*{until}\n"
                f"by {who(state.paused_by)} since {rfc3339(state.paused_at, tz)}{why}")
    else:
        head = f":arrow_forward: *{status.job}* is *active*" + (" — a run is in progress" if status.running else "")
    last = _run_line(status.last_run, tz) if status.last_run else "none yet"
    source = "configured" if status.schedule_source == "config" else "set at runtime"
    skipped = (f"\n*Skipped:* {human_time(status.skip_next, tz)} (`/foojob unskip` to run it)"
               if status.skip_next else "")
    next_run = human_time(status.next_run_at, tz) if status.next_run_at else "— (paused)"
    body = (f"*Schedule:* `{status.schedule}` — {status.schedule_text} ({status.timezone}; {source})"
            f"{skipped}\n*Next run:* {next_run}\n*Last run:* {last}")
    buttons: list[dict[str, Any]] = []
    if state.paused:
        buttons.append({"type": "button", "action_id": RESUME_ACTION, "value": status.job, "style": "primary",
                        "text": {"type": "plain_text", "text": "Resume"}})
    else:
        buttons.append({
            "type": "button", "action_id": PAUSE_ACTION, "value": status.job, "style": "danger",
            "text": {"type": "plain_text", "text": "Pause"},
            "confirm": {"title": {"type": "plain_text", "text": f"Pause {status.job}?"},
                        "text": {"type": "mrkdwn", "text": "Scheduled runs stop until someone resumes."},
                        "confirm": {"type": "plain_text", "text": "Pause"},
                        "deny": {"type": "plain_text", "text": "Cancel"}, "style": "danger"},
        })
    buttons.append({"type": "button", "action_id": RUN_AGAIN_ACTION, "value": status.job,
                    "text": {"type": "plain_text", "text": "Run now"}})
    return [_section(head), _section(body), {"type": "actions", "elements": buttons}]


def status_message(status: Status, tz: ZoneInfo) -> Message:
    state = status.state
    if state.paused:
        until = f" until {rfc3339(state.resume_at, tz)}" if state.resume_at else " until resumed"
        why = f" ({escape(state.pause_reason)})" if state.pause_reason else ""
        text = f"{status.job} is paused by {who(state.paused_by)}{until}{why}"
    else:
        text = f"{status.job} is active; next run {rfc3339(status.next_run_at, tz)}"
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=status_blocks(status, tz))


def _origin(schedule: Schedule) -> str:
    origin = "the configured schedule (`FOOJOB_CRON`)" if schedule.source == "config" else "set at runtime"
    if schedule.set_by is not None:
        origin += f", by {who(schedule.set_by)} on {human_time(schedule.set_at, schedule.tz)}"
    return origin


def schedule_message(schedule: Schedule, count: int = 5) -> Message:
    """``/foojob schedule``: the expression in words, where it comes from, the next fires."""
    fires = schedule.fires(count)
    skipped = schedule.skipped()
    head = f":calendar: *{schedule.job}* runs {_schedule_words(schedule)}\n{_origin(schedule)}"
    if skipped is not None:
        head += f"\n:fast_forward: skipped: {human_time(skipped, schedule.tz)}"
    text = (f"{schedule.job} runs {schedule.cron} ({schedule.describe()}, {schedule.timezone}); next: "
            + ", ".join(human_time(at, schedule.tz) for at in fires))
    return Message(text=truncate(text, FALLBACK_TEXT_MAX),
                   blocks=[_section(head), _section(f"*Next {len(fires)} fires:*\n" + _fire_list(fires, schedule.tz))])


def next_message(schedule: Schedule, count: int) -> Message:
    fires = schedule.fires(count)
    skipped = schedule.skipped()
    note = f" (not {human_time(skipped, schedule.tz)}: skipped)" if skipped else ""
    head = f"*Next {len(fires)} fires of {schedule.job}*{note}, {schedule.describe()} ({schedule.timezone}):"
    text = f"{head}\n{_fire_list(fires, schedule.tz)}"
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[_section(text)])


def schedule_preview(current: Schedule, proposed: Schedule, *, reset: bool) -> Message:
    """The ephemeral preview of ``schedule set``/``reset``: nothing changes until Apply."""
    fires = proposed.fires(5, skip=False)
    what = "Back to the configured schedule" if reset else "New schedule"
    head = (f":calendar: *{what} for {proposed.job}* (preview: nothing has changed yet)\n"
            f"now: {_schedule_words(current)}\nafter Apply: {_schedule_words(proposed)}")
    value = json.dumps({"job": proposed.job, "reset": True} if reset else
                       {"job": proposed.job, "cron": proposed.cron, "timezone": proposed.timezone})
    buttons = {"type": "actions", "elements": [
        {"type": "button", "action_id": APPLY_SCHEDULE_ACTION, "value": value, "style": "primary",
         "text": {"type": "plain_text", "text": "Apply"}},
        {"type": "button", "action_id": CANCEL_SCHEDULE_ACTION, "value": proposed.job,
         "text": {"type": "plain_text", "text": "Cancel"}},
    ]}
    text = (f"Preview: {proposed.job} would run {proposed.cron} ({proposed.describe()}, {proposed.timezone}); "
            "next: " + ", ".join(human_time(at, proposed.tz) for at in fires))
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[
        _section(head), _section("*Its next 5 fires:*\n" + _fire_list(fires, proposed.tz)), buttons])


def history_message(job: str, runs: list[RunRecord], tz: ZoneInfo) -> Message:
    if not runs:
        return text_message(f"*{job}* has not run yet.")
    lines = [_run_line(run, tz) for run in runs]
    blocks = [_section(f"*Last {len(runs)} run(s) of {job}*")]
    chunk: list[str] = []
    for line in lines:  # several sections: one is limited to 3000 characters
        if sum(len(c) + 1 for c in chunk) + len(line) > SECTION_TEXT_MAX - 10:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(_section("\n".join(chunk)))
    return Message(text=truncate(f"Last runs of {job}:\n" + "\n".join(lines), FALLBACK_TEXT_MAX), blocks=blocks)


def home_view(statuses: list[Status], runs: list[RunRecord], tz: ZoneInfo,
              notice: Message | None = None) -> dict[str, Any]:
    """The Home tab; ``notice`` (the answer to a click on it) comes first."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": "foojob"}}]
    if notice is not None:
        blocks += [b for b in notice.blocks if b["type"] != "actions"] + [{"type": "divider"}]
    for status in statuses:
        blocks.extend(status_blocks(status, tz))
        blocks.append({"type": "divider"})
    blocks.append(_section(f"*Last {len(runs)} runs*" if runs else "*No runs yet*"))
    blocks.extend(_context(_run_line(run, tz)) for run in runs)
    return {"type": "home", "blocks": blocks[:100]}  # a view holds at most 100 blocks


def home_unavailable_view(problem: str) -> dict[str, Any]:
    return {"type": "home", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "foojob"}},
        _section(f":warning: Status is not available right now: {escape(problem)}"),
    ]}
