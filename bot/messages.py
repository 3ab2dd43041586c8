"""The product's voice: the messages posted on the webhook — run results, pause and resume,
schedule changes and skips — as Block Kit with a plain-text fallback, within Block Kit's limits.

They go out whether or not the Slack control surface (Socket Mode) is on, so they live below the
core, which stages them; ``bot/slack/`` keeps only what answers a command or a click there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.errors import BadInput
from bot.model import JobState, RunRecord
from bot.notify import Message
from bot.schedules import Schedule, parse_cron, parse_zone
from bot.timefmt import clock_time, human_duration, human_time

SECTION_TEXT_MAX = 3000  # Block Kit: a section's text
FALLBACK_TEXT_MAX = 4000  # Slack truncates longer top-level text

RUN_AGAIN_ACTION = "foojob_run_now"
PAUSE_ACTION = "foojob_pause"
RESUME_ACTION = "foojob_resume"
PAUSE_1H_ACTION = "foojob_pause_1h"


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


def run_result_message(run: RunRecord, tz: ZoneInfo, *, failures: int = 0, since: datetime | None = None,
                       mention: str | None = None, alert: bool = False) -> Message:
    """A run's result. ``failures``: the failure streak this run ends (a success: a recovery) or
    extends (a failure: its length, this run included); ``alert``: the failure that reached
    FOOJOB_ALERT_AFTER, which pings ``mention``."""
    ok = run.status == "succeeded"
    icon = ":white_check_mark:" if ok else (":rotating_light:" if alert else ":x:")
    outcome = f"{run.status} in {human_duration(run.duration)}"
    headline = f"{run.job} {outcome}"
    over = f" over {human_duration(run.started_at - since)}" if since is not None else ""
    if ok and failures:
        icon, headline = ":large_green_circle:", f"{run.job} recovered after {_failures(failures)}{over}"
    elif alert:
        headline = f"{run.job} has failed {failures} times in a row{over}"
    elif not ok and failures > 1:
        outcome += f" ({_nth(failures)} failure in a row)"
        headline = f"{run.job} {outcome}"
    ping = f"{mention} " if alert and mention else ""
    head = f"*{headline}*" if alert or (ok and failures) else f"*{run.job}* {outcome}"
    when = human_time(run.scheduled_for, tz) if run.scheduled_for else None
    origin = f"{run.trigger} for {when}" if when else f"{run.trigger} by {who(run.triggered_by)}"
    if run.attempt > 1:  # a fire's last attempt: the message says so
        origin += f", attempt {run.attempt}"
    detail = escape(json.dumps(run.result, ensure_ascii=False) if ok else (run.error or "failed"))
    text = truncate(f"{ping}{icon} {headline} (run #{run.id}, {origin}): {detail}", FALLBACK_TEXT_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(f"{ping}{icon} {head}", SECTION_TEXT_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _code(detail)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(
            f"run #{run.id} · {origin} · started {human_time(run.started_at, tz)}", SECTION_TEXT_MAX)}]},
    ]
    if not ok:
        blocks.append(_fix_buttons(run.job))
    return Message(text=text, blocks=blocks, job=run.job, success=ok and not failures)


CARD_ERROR = 300  # characters of an error on a run's card; the whole error goes in its thread
CARD_ROWS = 5  # rows of an SQL job's result on its card; the rest go in its thread


def running_card(job: str, run_id: int, started_at: datetime, tz: ZoneInfo) -> Message:
    """A run still going 2 s after it started: its card, edited into the result when it ends."""
    text = f":hourglass_flowing_sand: {job} running since {clock_time(started_at, tz)}, run #{run_id}"
    return Message(text=text, blocks=[section(text)], job=job, card=f"run:{run_id}", method="post", running=True)


def unfinished_card(job: str, run_id: int, started_at: datetime, reason: str, tz: ZoneInfo) -> Message:
    """A run's card, when the run ended without committing: nothing of it was kept."""
    text = (f":warning: {job}: run #{run_id}, started {human_time(started_at, tz)}, did not finish "
            f"({escape(truncate(reason, CARD_ERROR))}); nothing of it was kept")
    return Message(text=text, blocks=[section(text), _fix_buttons(job)], job=job, card=f"run:{run_id}",
                   method="update")


def card_messages(run: RunRecord, tz: ZoneInfo, *, posted: bool, failures: int = 0, since: datetime | None = None,
                  mention: str | None = None, alert: bool = False) -> list[Message]:
    """A run's result in a channel: its card (the post edited in place, or a new post for a run
    that ended within 2 s), what does not fit on it as a reply in its thread, and — for the alert —
    a new message with the mention (Slack does not notify on an edit)."""
    card = f"run:{run.id}"
    shown, details = run, []
    if run.error and len(run.error) > CARD_ERROR:
        shown = replace(shown, error=run.error[:CARD_ERROR - 1] + "… (the whole error is in the thread)")
        details.append(f"*{run.job}* run #{run.id}, the whole error:\n{_code(escape(run.error))}")
    rows = (run.result or {}).get("rows")
    if isinstance(rows, list) and len(rows) > CARD_ROWS:
        shown = replace(shown, result={**(run.result or {}), "rows": rows[:CARD_ROWS]})
        details.append(f"*{run.job}* run #{run.id}, rows {CARD_ROWS + 1} to {len(rows)}:\n"
                       + _code(escape(json.dumps(rows[CARD_ROWS:], ensure_ascii=False))))
    result = run_result_message(shown, tz, failures=failures, since=since, alert=alert)  # no mention on a card
    out = [replace(result, card=card, method="update" if posted else "post",
                   success=result.success)]
    out += [Message(text=truncate(d, FALLBACK_TEXT_MAX), blocks=[section(d)], job=run.job, card=card, method="reply")
            for d in details]
    if alert:
        out.append(run_result_message(shown, tz, failures=failures, since=since, alert=True, mention=mention))
    return out


def _failures(n: int) -> str:
    return "1 failure" if n == 1 else f"{n} failures"


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def missed_message(job: str, instant: datetime, reason: str, tz: ZoneInfo) -> Message:
    """A fire of the schedule that did not run while the service was up."""
    text = f":warning: {job} missed its fire of {human_time(instant, tz)}: {escape(reason)}"
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text), _fix_buttons(job)], job=job)


def gap_message(job: str, since: datetime, until: datetime, fires: int, capped: bool,
                caught_up: datetime | None, why_not: str | None, tz: ZoneInfo) -> Message:
    """At start-up, after a time when no replica was up: the whole gap in one message."""
    count = f"{'more than ' if capped else ''}{fires} fire{'s' if fires != 1 or capped else ''}"
    then = (f"caught up the latest ({human_time(caught_up, tz)})" if caught_up is not None
            else f"not caught up: {why_not}")
    text = (f":warning: {job}: no replica was up from {human_time(since, tz)} to {human_time(until, tz)}: "
            f"{count} missed; {then}")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)], job=job)


def outage_message(jobs: list[str], since: datetime, error: str, tz: ZoneInfo) -> Message:
    """The database cannot be reached: said once, when fires start failing for it."""
    text = (f":rotating_light: {', '.join(jobs)}: the database is unreachable since {human_time(since, tz)} "
            f"({escape(error)}); scheduled runs fail until it is back. One more message when it is.")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])


def back_message(since: datetime, until: datetime, missed: dict[str, int], tz: ZoneInfo) -> Message:
    """The database is back: how long it was gone, how many fires were missed meanwhile."""
    counts = "; ".join(f"{job}: {n} fire{'s' if n != 1 else ''} missed" for job, n in missed.items()) or \
        "no fire was missed"
    text = (f":large_green_circle: the database is back after {human_duration(until - since)} "
            f"(unreachable from {human_time(since, tz)}): {counts}")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])


def run_unrecorded_message(job: str, trigger: str, scheduled_for: datetime | None, error: str,
                           tz: ZoneInfo) -> Message:
    """A run that failed before it could be recorded (the database is unreachable)."""
    origin = f"{trigger} for {human_time(scheduled_for, tz)}" if scheduled_for else trigger
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


def _fix_buttons(job: str) -> dict[str, Any]:
    """The fix at hand on a failure: run it again, or pause it for an hour while someone looks."""
    buttons = _run_again(job)
    buttons["elements"].append({"type": "button", "action_id": PAUSE_1H_ACTION, "value": job,
                                "text": {"type": "plain_text", "text": "Pause 1h"}})
    return buttons


def paused_message(state: JobState, tz: ZoneInfo) -> Message:
    until = f" until {human_time(state.resume_at, tz)}" if state.resume_at else ""
    why = f": {escape(state.pause_reason)}" if state.pause_reason else ""
    text = truncate(f":double_vertical_bar: {state.job} paused by {who(state.paused_by)}{until}{why}",
                    FALLBACK_TEXT_MAX)
    return Message(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                   "text": truncate(text, SECTION_TEXT_MAX)}}],
                   job=state.job)


def resumed_message(job: str, actor: str | None, automatic: bool) -> Message:
    by = "automatically (the pause ran out)" if automatic else f"by {who(actor)}"
    text = f":arrow_forward: {job} resumed {by}"
    return Message(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}], job=job)


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
                                      section("*Next fires:*\n" + fire_list(fires, new.tz))], job=new.job)


def skip_message(job: str, actor: str, skipped: datetime, following: datetime, tz: ZoneInfo) -> Message:
    text = (f":fast_forward: {job}: the fire of {human_time(skipped, tz)} will be skipped (by {who(actor)}); "
            f"the next run after it is {human_time(following, tz)}")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)], job=job)


def unskip_message(job: str, actor: str, unskipped: datetime, tz: ZoneInfo) -> Message:
    text = (f":leftwards_arrow_with_hook: {job}: the fire of {human_time(unskipped, tz)} will run after all "
            f"(skip cleared by {who(actor)})")
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)], job=job)


def folded_message(job: str, runs: int, since: datetime, until: datetime, tz: ZoneInfo) -> Message:
    """A backlog's waiting successes of ``job``, as one line."""
    if since.astimezone(tz).date() == until.astimezone(tz).date():  # 12:00:01–12:09:12 UTC
        span_text = f"{since.astimezone(tz).strftime('%H:%M:%S')}–{clock_time(until, tz)}"
    else:
        span_text = f"{human_time(since, tz)}–{human_time(until, tz)}"
    text = f":white_check_mark: {job}: {runs} runs succeeded, {span_text} (folded: Slack was behind)"
    return Message(text=text, blocks=[section(text)], job=job)


def change_message(event: Mapping[str, Any], state: JobState, tz: ZoneInfo) -> Message | None:
    """The announcement of a change read from the audit trail (made by another process), as the
    process that made it would have told it."""
    job, action, actor, detail = event["job"], event["action"], event["actor"], event["detail"] or {}
    if action == "pause":
        paused = replace(state, paused=True, paused_by=actor, pause_reason=event["reason"],
                         resume_at=event["resume_at"])
        return paused_message(paused, tz)
    if action in ("resume", "auto-resume"):
        return resumed_message(job, actor, automatic=action == "auto-resume")
    if action in ("schedule-set", "schedule-reset", "schedule-deploy") and state.schedule is not None:
        try:
            old = Schedule(job, parse_cron(detail["old"]["cron"]), parse_zone(detail["old"]["timezone"]),
                           "config", None, None, 0)
        except (KeyError, TypeError, BadInput):
            return None
        return schedule_changed_message(old, state.schedule, actor or "deploy", action, tz)
    if action == "skip" and state.schedule is not None and "skipped" in detail:
        skipped = datetime.fromisoformat(detail["skipped"])
        return skip_message(job, actor or "", skipped, state.schedule.expression.next_after(skipped, state.schedule.tz),
                            tz)
    if action == "unskip" and "unskipped" in detail:
        return unskip_message(job, actor or "", datetime.fromisoformat(detail["unskipped"]), tz)
    return None


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT_MAX)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_TEXT_MAX)}]}


def text_message(text: str) -> Message:
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])
