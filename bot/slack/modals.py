"""The modals of the Slack surface (``views.open``), and reading what was submitted in them. Pure:
no I/O.

* **Pause**: a duration (30m, 1h, 2h, 4h, 1d, or until resumed) and a reason; what the audit trail
  records, asked for where it is cheap to give.
* **Change schedule**: the expression and the zone, with a preview (in words, and the next 5
  fires) that follows what is typed (``dispatch_action`` on the input: each change comes back as
  a ``block_actions`` and the view is updated in place).

A modal's job travels in ``private_metadata``; like anything in a payload it is checked again on
submission (it names a job, and the user has the role), never trusted.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bot.errors import BadInput
from bot.messages import escape, fire_list, truncate
from bot.schedules import Schedule, parse_cron, parse_zone

PAUSE_MODAL = "foojob_pause_modal"
SCHEDULE_MODAL = "foojob_schedule_modal"
CHANGE_SCHEDULE_ACTION = "foojob_schedule_change"
CRON_TYPED_ACTION = "foojob_schedule_cron_typed"
ZONE_TYPED_ACTION = "foojob_schedule_zone_typed"

DURATIONS: dict[str, timedelta | None] = {
    "30m": timedelta(minutes=30), "1h": timedelta(hours=1), "2h": timedelta(hours=2), "4h": timedelta(hours=4),
    "1d": timedelta(days=1), "until-resumed": None,
}
_DURATION_WORDS = {"30m": "30 minutes", "1h": "1 hour", "2h": "2 hours", "4h": "4 hours", "1d": "1 day",
                   "until-resumed": "until someone resumes it"}
MAX_REASON = 500
_AS_TYPED = {"trigger_actions_on": ["on_character_entered", "on_enter_pressed"]}  # the preview follows typing


def _text(text: str, limit: int) -> dict[str, str]:
    return {"type": "plain_text", "text": truncate(text, limit)}


def _option(value: str) -> dict[str, Any]:
    return {"text": _text(_DURATION_WORDS[value], 75), "value": value}


def metadata(job: str, *, home: bool, channel: str | None = None) -> str:
    """What a modal carries: its job, whether it was opened from the Home tab (which is then
    published again once the change is made), and the channel of the message it was opened from
    (where the change is announced when there is no webhook nor SLACK_CHANNEL)."""
    return json.dumps({"job": job, "home": home, "channel": channel})


def read_metadata(text: str) -> tuple[str, bool, str | None]:
    """``(job, home, channel)`` from a submitted modal's ``private_metadata`` (anything else: no job)."""
    try:
        data = json.loads(text)
        channel = data.get("channel")
        return str(data["job"]), bool(data.get("home")), str(channel) if channel else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return text[:40], False, None


def pause_modal(job: str, *, home: bool = False, channel: str | None = None) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": PAUSE_MODAL, "private_metadata": metadata(job, home=home, channel=channel),
        "title": _text(f"Pause {job}", 24), "submit": _text("Pause", 24), "close": _text("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": "duration", "label": _text("For how long", 2000),
             "element": {"type": "static_select", "action_id": "value", "initial_option": _option("1h"),
                         "options": [_option(value) for value in DURATIONS]}},
            {"type": "input", "block_id": "reason", "optional": True, "label": _text("Why (for the audit trail)", 2000),
             "element": {"type": "plain_text_input", "action_id": "value", "max_length": MAX_REASON,
                         "placeholder": _text("deploy of v2, the upstream API is down…", 150)}},
        ],
    }


def read_pause(values: dict[str, Any]) -> tuple[timedelta | None, str | None]:
    """The duration and reason of a submitted pause modal; BadInput (keyed by block) for a value
    that is not one the modal offers."""
    chosen = ((values.get("duration") or {}).get("value") or {}).get("selected_option") or {}
    if chosen.get("value") not in DURATIONS:
        raise FieldError("duration", "Choose how long to pause for.")
    reason = ((values.get("reason") or {}).get("value") or {}).get("value")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON or "\x00" in reason):
        raise FieldError("reason", f"A reason is text of at most {MAX_REASON} characters.")
    return DURATIONS[chosen["value"]], (reason.strip() or None) if reason else None


class FieldError(BadInput):
    """A field of a submitted modal that is wrong: shown on that field (``response_action: errors``)."""

    def __init__(self, block_id: str, message: str) -> None:
        super().__init__(message)
        self.block_id = block_id


def schedule_modal(current: Schedule, cron: str | None = None, zone: str | None = None, *,
                   home: bool = False, channel: str | None = None) -> dict[str, Any]:
    """The Change schedule modal: ``cron``/``zone`` as typed so far (None: the current schedule's),
    with the preview that follows them."""
    cron = current.cron if cron is None else cron
    zone = current.timezone if zone is None else zone
    return {
        "type": "modal", "callback_id": SCHEDULE_MODAL,
        "private_metadata": metadata(current.job, home=home, channel=channel),
        "title": _text(f"Schedule of {current.job}", 24), "submit": _text("Apply", 24), "close": _text("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": "cron", "dispatch_action": True,
             "label": _text("Crontab expression (5 fields, or 6 with seconds first)", 2000),
             "element": {"type": "plain_text_input", "action_id": CRON_TYPED_ACTION, "initial_value": cron[:200],
                         "dispatch_action_config": _AS_TYPED}},
            {"type": "input", "block_id": "zone", "dispatch_action": True, "label": _text("IANA time zone", 2000),
             "element": {"type": "plain_text_input", "action_id": ZONE_TYPED_ACTION, "initial_value": zone[:100],
                         "dispatch_action_config": _AS_TYPED}},
            {"type": "section", "block_id": "preview",
             "text": {"type": "mrkdwn", "text": preview(current, cron, zone)}},
        ],
    }


def preview(current: Schedule, cron: str, zone: str) -> str:
    """The preview section's text: the typed schedule in words and its next 5 fires, or what is wrong."""
    try:
        proposed = proposal(current, cron, zone)
    except BadInput as exc:
        return truncate(f":warning: {escape(str(exc))}", 3000)
    fires = proposed.fires(5, skip=False)
    return truncate(f"*{escape(proposed.describe())}* ({proposed.timezone})\n*Next 5 fires:*\n"
                    + fire_list(fires, proposed.tz), 3000)


def proposal(current: Schedule, cron: str, zone: str) -> Schedule:
    """The schedule typed; FieldError naming the field for a bad one."""
    if not cron.strip():
        raise FieldError("cron", "cron: an expression is needed, such as \"0 6 * * 1-5\"")
    try:
        expression = parse_cron(" ".join(cron.split()))
    except BadInput as exc:
        raise FieldError("cron", str(exc)) from None
    try:
        tz = parse_zone(zone.strip()) if zone.strip() else current.tz
    except BadInput as exc:
        raise FieldError("zone", str(exc)) from None
    return Schedule(current.job, expression, tz, "runtime", None, None, 0)


def typed(values: dict[str, Any]) -> tuple[str, str]:
    """The expression and zone as typed in a schedule modal's state."""
    cron = ((values.get("cron") or {}).get(CRON_TYPED_ACTION) or {}).get("value") or ""
    zone = ((values.get("zone") or {}).get(ZONE_TYPED_ACTION) or {}).get("value") or ""
    return str(cron), str(zone)
