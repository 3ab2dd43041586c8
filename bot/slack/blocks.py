"""The Slack surface's own replies and views: status, history, the schedule and its preview, the
Home tab. The messages posted on the webhook are in ``bot.messages``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.messages import (
    FALLBACK_TEXT_MAX,
    PAUSE_ACTION,
    RESUME_ACTION,
    RUN_AGAIN_ACTION,
    SECTION_TEXT_MAX,
    context,
    escape,
    fire_list,
    schedule_words,
    section,
    text_message,
    truncate,
    who,
)
from bot.model import RunRecord, Status
from bot.notify import Message
from bot.schedules import Schedule
from bot.slack.modals import CHANGE_SCHEDULE_ACTION
from bot.timefmt import human_duration, human_time

# -- replies and views of the Slack surface -----------------------------------------------------

APPLY_SCHEDULE_ACTION = "foojob_schedule_apply"
CANCEL_SCHEDULE_ACTION = "foojob_schedule_cancel"


def _run_line(run: RunRecord, tz: ZoneInfo, *, with_job: bool = False) -> str:
    icon = ":white_check_mark:" if run.status == "succeeded" else ":x:"
    detail = escape(json.dumps(run.result, ensure_ascii=False) if run.status == "succeeded" else (run.error or ""))
    if run.trigger in ("schedule", "catch-up", "retry"):
        origin = run.trigger + (f" (attempt {run.attempt})" if run.attempt > 1 else "")
    else:
        origin = f"{run.trigger} by {who(run.triggered_by)}"
    job = f"*{run.job}* " if with_job else ""
    return truncate(f"{icon} {job}#{run.id} {human_time(run.started_at, tz)} · {human_duration(run.duration)} · "
                    f"{origin} · `{truncate(detail, 200)}`", 600)


def which_job(verb: str, jobs: list[str]) -> str:
    """A changing verb without a job, when there are several: nothing changed; which jobs there are."""
    words = verb.replace("schedule-", "schedule ")
    example = f"/foojob {words.split()[0]} {jobs[0]}" + (f" {words.split()[1]}" if " " in words else "")
    return (f"Which job? foojob runs {len(jobs)} jobs: {', '.join(f'`{j}`' for j in jobs)}. "
            f"Name one right after the verb, e.g. `{example}`. Nothing was changed.")


STRIP_RUNS = 30
_SPARKS = "▁▂▃▄▅▆▇█"


def outcome_strip(runs: list[RunRecord]) -> str:
    """The last runs at a glance, oldest first: a square per run, green or red, and a sparkline of
    their durations with min / median / max. ``runs``: newest first, as history gives them."""
    done = [run for run in reversed(runs[:STRIP_RUNS]) if run.duration is not None]
    if not done:
        return "no runs yet"
    squares = "".join(":large_green_square:" if run.status == "succeeded" else ":large_red_square:" for run in done)
    seconds = [run.duration.total_seconds() for run in done if run.duration is not None]
    low, high = min(seconds), max(seconds)
    spark = "".join(_SPARKS[0 if high == low else round((s - low) / (high - low) * (len(_SPARKS) - 1))]
                    for s in seconds)
    middle = sorted(seconds)[len(seconds) // 2]
    failed = sum(run.status != "succeeded" for run in done)
    return (f"{squares}\n`{spark}` {len(done)} runs, {failed} failed · min {human_duration(timedelta(seconds=low))}"
            f" · median {human_duration(timedelta(seconds=middle))} · max {human_duration(timedelta(seconds=high))}")


def status_blocks(status: Status, tz: ZoneInfo, strip: str | None = None) -> list[dict[str, Any]]:
    """A job's card: its state, schedule, next and last run (and ``strip``: its last runs at a
    glance), with its buttons."""
    state = status.state
    if state.paused:
        until = f" until {human_time(state.resume_at, tz)}" if state.resume_at else " until resumed"
        why = f"\n>{escape(state.pause_reason)}" if state.pause_reason else ""
        head = (f":double_vertical_bar: *{status.job}* is *paused*{until}\n"
                f"by {who(state.paused_by)} since {human_time(state.paused_at, tz)}{why}")
    else:
        head = f":arrow_forward: *{status.job}* is *active*" + (" — a run is in progress" if status.running else "")
    if status.description:
        head += f"\n_{escape(status.description)}_"
    last = _run_line(status.last_run, tz) if status.last_run else "none yet"
    source = "configured" if status.schedule_source == "config" else "set at runtime"
    skipped = (f"\n*Skipped:* {human_time(status.skip_next, tz)} (`/foojob unskip` to run it)"
               if status.skip_next else "")
    next_run = human_time(status.next_run_at, tz) if status.next_run_at else "— (paused)"
    body = (f"*Schedule:* `{status.schedule}` — {status.schedule_text} ({status.timezone}; {source})"
            f"{skipped}\n*Next run:* {next_run}\n*Last run:* {last}" + (f"\n{strip}" if strip else ""))
    buttons: list[dict[str, Any]] = []
    if state.paused:
        buttons.append({"type": "button", "action_id": RESUME_ACTION, "value": status.job, "style": "primary",
                        "text": {"type": "plain_text", "text": "Resume"}})
    else:
        # Opens a modal: how long, and why (so no confirm dialog first).
        buttons.append({"type": "button", "action_id": PAUSE_ACTION, "value": status.job, "style": "danger",
                        "text": {"type": "plain_text", "text": "Pause…"}})
    buttons.append({"type": "button", "action_id": RUN_AGAIN_ACTION, "value": status.job,
                    "text": {"type": "plain_text", "text": "Run now"}})
    return [section(head), section(body), {"type": "actions", "elements": buttons}]


MAX_MESSAGE_BLOCKS = 50  # Block Kit: a message
MAX_VIEW_BLOCKS = 100  # Block Kit: a view (the Home tab)


def job_cards(statuses: list[Status], tz: ZoneInfo, budget: int,
              strips: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A card per job — its state, schedule, next and last run, and its buttons — in at most
    ``budget`` blocks: each card in one section and its buttons, with a divider when there is room;
    when even that does not fit, a line per job (no buttons: ``/foojob status <job>`` has them)."""
    cards = [status_blocks(status, tz, (strips or {}).get(status.job)) for status in statuses]
    if 4 * len(cards) <= budget:
        return [block for card in cards for block in (*card, {"type": "divider"})]
    if 2 * len(cards) <= budget:
        return [block for head, body, buttons in cards
                for block in (section(head["text"]["text"] + "\n" + body["text"]["text"]), buttons)]
    return [*_sections([_status_line(status, tz) for status in statuses])[: budget - 1],
            context("Name a job for its buttons: `/foojob status <job>`")]


def _status_line(status: Status, tz: ZoneInfo) -> str:
    state = ":double_vertical_bar: paused" if status.state.paused else ":arrow_forward: active"
    next_run = human_time(status.next_run_at, tz) if status.next_run_at else "—"
    last = (f"{':white_check_mark:' if status.last_run.status == 'succeeded' else ':x:'} "
            f"{human_time(status.last_run.started_at, tz)}" if status.last_run else "none yet")
    return f"*{status.job}* {state} · `{status.schedule}` · next {next_run} · last {last}"


def statuses_message(statuses: list[Status], tz: ZoneInfo) -> Message:
    """``/foojob status`` with several jobs: a block per job with that job's buttons, or a line per
    job when there are too many for a message."""
    lines = [status_message(status, tz).text for status in statuses]
    return Message(text=truncate("\n".join(lines), FALLBACK_TEXT_MAX),
                   blocks=job_cards(statuses, tz, MAX_MESSAGE_BLOCKS))


def schedules_message(schedules: list[Schedule]) -> Message:
    """``/foojob schedule`` with several jobs: each one's schedule in words and its next fires."""
    lines = [f":calendar: *{s.job}* runs {schedule_words(s)}; next: "
             + ", ".join(human_time(at, s.tz) for at in s.fires(3)) for s in schedules]
    return Message(text=truncate("\n".join(lines), FALLBACK_TEXT_MAX), blocks=_sections(lines))


def next_of_every_job(schedules: list[Schedule], count: int) -> Message:
    """``/foojob next`` with several jobs: each one's next fires."""
    lines = [f"*{s.job}* ({s.describe()}, {s.timezone}): " + ", ".join(human_time(at, s.tz) for at in s.fires(count))
             for s in schedules]
    return Message(text=truncate("\n".join(lines), FALLBACK_TEXT_MAX), blocks=_sections(lines))


def _sections(lines: list[str]) -> list[dict[str, Any]]:
    """Lines in as few sections as fit (one holds 3,000 characters), 50 blocks at most."""
    out: list[dict[str, Any]] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(c) + 1 for c in chunk) + len(line) > SECTION_TEXT_MAX - 10:
            out.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(truncate(line, SECTION_TEXT_MAX - 10))
    if chunk:
        out.append(section("\n".join(chunk)))
    return out[:50]


def status_message(status: Status, tz: ZoneInfo) -> Message:
    state = status.state
    if state.paused:
        until = f" until {human_time(state.resume_at, tz)}" if state.resume_at else " until resumed"
        why = f" ({escape(state.pause_reason)})" if state.pause_reason else ""
        text = f"{status.job} is paused by {who(state.paused_by)}{until}{why}"
    else:
        text = f"{status.job} is active; next run {human_time(status.next_run_at, tz)}"
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=status_blocks(status, tz))


def _origin(schedule: Schedule, origin: str) -> str:
    """Where the schedule comes from; ``origin``: what configures it (``FOOJOB_CRON``, a file)."""
    text = f"the configured schedule (`{origin}`)" if schedule.source == "config" else "set at runtime"
    if schedule.set_by is not None:
        text += f", by {who(schedule.set_by)} on {human_time(schedule.set_at, schedule.tz)}"
    return text


def schedule_message(schedule: Schedule, count: int = 5, *, origin: str) -> Message:
    """``/foojob schedule``: the expression in words, where it comes from, the next fires."""
    fires = schedule.fires(count)
    skipped = schedule.skipped()
    head = f":calendar: *{schedule.job}* runs {schedule_words(schedule)}\n{_origin(schedule, origin)}"
    if skipped is not None:
        head += f"\n:fast_forward: skipped: {human_time(skipped, schedule.tz)}"
    text = (f"{schedule.job} runs {schedule.cron} ({schedule.describe()}, {schedule.timezone}); next: "
            + ", ".join(human_time(at, schedule.tz) for at in fires))
    change = {"type": "actions", "elements": [
        {"type": "button", "action_id": CHANGE_SCHEDULE_ACTION, "value": schedule.job,
         "text": {"type": "plain_text", "text": "Change schedule"}}]}
    return Message(text=truncate(text, FALLBACK_TEXT_MAX),
                   blocks=[section(head), section(f"*Next {len(fires)} fires:*\n" + fire_list(fires, schedule.tz)),
                           change])


def next_message(schedule: Schedule, count: int) -> Message:
    fires = schedule.fires(count)
    skipped = schedule.skipped()
    note = f" (not {human_time(skipped, schedule.tz)}: skipped)" if skipped else ""
    head = f"*Next {len(fires)} fires of {schedule.job}*{note}, {schedule.describe()} ({schedule.timezone}):"
    text = f"{head}\n{fire_list(fires, schedule.tz)}"
    return Message(text=truncate(text, FALLBACK_TEXT_MAX), blocks=[section(text)])


def schedule_preview(current: Schedule, proposed: Schedule, *, reset: bool) -> Message:
    """The ephemeral preview of ``schedule set``/``reset``: nothing changes until Apply."""
    fires = proposed.fires(5, skip=False)
    what = "Back to the configured schedule" if reset else "New schedule"
    head = (f":calendar: *{what} for {proposed.job}* (preview: nothing has changed yet)\n"
            f"now: {schedule_words(current)}\nafter Apply: {schedule_words(proposed)}")
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
        section(head), section("*Its next 5 fires:*\n" + fire_list(fires, proposed.tz)), buttons])


def history_message(job: str | None, runs: list[RunRecord], tz: ZoneInfo,
                    strips: dict[str, str] | None = None) -> Message:
    """The last runs of ``job``, or of every job (None: each line names its job), opening with
    ``strips``: each job's last 30 outcomes at a glance."""
    what = job or "every job"
    if not runs:
        return text_message(f"*{job}* has not run yet." if job else "No job has run yet.")
    lines = [_run_line(run, tz, with_job=job is None) for run in runs]
    glance = [section(f"*{name}* {strip}") for name, strip in (strips or {}).items()][:MAX_MESSAGE_BLOCKS - 20]
    blocks = [*glance, section(f"*Last {len(runs)} run(s) of {what}*"), *_sections(lines)][:MAX_MESSAGE_BLOCKS]
    return Message(text=truncate(f"Last runs of {what}:\n" + "\n".join(lines), FALLBACK_TEXT_MAX), blocks=blocks)


def home_view(statuses: list[Status], runs: list[RunRecord], tz: ZoneInfo,
              notice: Message | None = None, strips: dict[str, str] | None = None) -> dict[str, Any]:
    """The Home tab: a card per job, then the last runs of every job, within a view's 100 blocks;
    ``notice`` (the answer to a click on it) comes first."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": "foojob"}}]
    if notice is not None:
        blocks += [b for b in notice.blocks if b["type"] != "actions"] + [{"type": "divider"}]
    shown = runs[:10]
    blocks += job_cards(statuses, tz, MAX_VIEW_BLOCKS - len(blocks) - 1 - len(shown), strips)
    room = max(0, MAX_VIEW_BLOCKS - len(blocks) - 1)
    blocks.append(section(f"*Last {len(shown[:room])} runs*" if shown else "*No runs yet*"))
    blocks.extend(context(_run_line(run, tz, with_job=True)) for run in shown[:room])
    return {"type": "home", "blocks": blocks}


def home_unavailable_view(problem: str) -> dict[str, Any]:
    return {"type": "home", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "foojob"}},
        section(f":warning: Status is not available right now: {escape(problem)}"),
    ]}
