"""Slack modals: Pause asks how long and why; Change schedule previews as you type. The role is
checked on the click and again on submission, forged submissions included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.conftest import Spawner, wait_until
from tests.slack_sim import SlackSimulator
from tests.test_slack import acked, button_ids, replies, start


def _pause_values(duration: str, reason: str | None) -> dict[str, dict[str, Any]]:
    return {"duration": {"value": {"type": "static_select", "selected_option": {"value": duration}}},
            "reason": {"value": {"type": "plain_text_input", "value": reason}}}


def _schedule_values(cron: str, zone: str) -> dict[str, dict[str, Any]]:
    return {"cron": {"foojob_schedule_cron_typed": {"type": "plain_text_input", "value": cron}},
            "zone": {"foojob_schedule_zone_typed": {"type": "plain_text_input", "value": zone}}}


async def _opened(slack: SlackSimulator, count: int) -> str:
    await wait_until(lambda: len(slack.modals) >= count, message="the modal opened")
    return sorted(slack.modals)[count - 1]


async def test_pause_asks_how_long_and_why(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                          db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="U0ALICE")
    [status] = await replies(slack, await slack.command("status"))
    assert button_ids(status) == ["foojob_pause", "foojob_run_now"]

    # Someone else: refused on the click, no modal.
    env = await slack.click("foojob_pause", "foo", user="U0MALLORY")
    [refusal] = await replies(slack, env)
    assert "only *operators*" in refusal["text"] and slack.modals == {}

    await slack.click("foojob_pause", "foo", user="U0ALICE")
    view_id = await _opened(slack, 1)
    modal = slack.modals[view_id]
    assert modal["callback_id"] == "foojob_pause_modal" and json.loads(modal["private_metadata"])["job"] == "foo"
    options = [o["value"] for o in modal["blocks"][0]["element"]["options"]]
    assert options == ["30m", "1h", "2h", "4h", "1d", "until-resumed"]

    # A forged submission (an outsider, or a job that does not exist) is refused on the field.
    ack = await acked(slack, await slack.submit(view_id, _pause_values("2h", "x"), user="U0MALLORY"))
    assert ack["response_action"] == "errors" and "only *operators*" in ack["errors"]["reason"]
    ack = await acked(slack, await slack.submit(view_id, _pause_values("2h", "x"), private_metadata="nope"))
    assert ack["response_action"] == "errors" and "nope" in ack["errors"]["reason"]
    ack = await acked(slack, await slack.submit(view_id, _pause_values("3y", "x")))
    assert ack["response_action"] == "errors" and "duration" in ack["errors"]
    assert not await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused")

    # The real one: paused for 2 hours, with the reason, by Alice.
    ack = await acked(slack, await slack.submit(view_id, _pause_values("2h", "deploy of v2")))
    assert ack == {}  # the modal closes
    state = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_job_state WHERE paused"),
                             message="paused by the modal")
    assert state["pause_reason"] == "deploy of v2" and state["paused_by"] == "U0ALICE"
    left = state["resume_at"] - datetime.now(UTC)
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)
    # Announced as any pause is (here through the webhook).
    await wait_until(lambda: [m for m in slack.webhook if "foo paused by <@U0ALICE>" in m.get("text", "")],
                     message="the pause announced")
    assert slack.refused == []


async def test_a_change_that_fails_after_the_modal_closed_is_told_to_its_user(
        spawn: Spawner, slack: SlackSimulator, db_url: str, db: asyncpg.Connection) -> None:
    # The modal closes at the ack; the pause is made after it. When that fails, the user who
    # submitted is told so in the channel the modal came from (only they see it), not only the log.
    await db.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.paused THEN RAISE EXCEPTION 'pauses are refused today'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON foojob_job_state FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    await start(spawn, slack, db_url)
    await slack.click("foojob_pause", "foo", user="U0ALICE", channel="C0OPS")
    view_id = await _opened(slack, 1)
    ack = await acked(slack, await slack.submit(view_id, _pause_values("1h", "deploy")))
    assert ack == {}  # closed: nothing else could be said on the modal
    [told] = await wait_until(lambda: slack.ephemerals, message="the user told it failed")
    assert told["channel"] == "C0OPS" and told["user"] == "U0ALICE" and ":warning:" in told["text"]
    assert not await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused")


async def test_change_schedule_previews_as_you_type_and_applies(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                               db: asyncpg.Connection) -> None:
    slack.groups["S0PLAN"] = ["U0PLANNER"]
    # No webhook nor SLACK_CHANNEL: a change is announced in the channel the modal was opened from.
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="U0ALICE,U0PLANNER", SLACK_SCHEDULERS="S0PLAN",
                SLACK_WEBHOOK_URL="")
    [shown] = await replies(slack, await slack.command("schedule"))
    assert "foojob_schedule_change" in button_ids(shown)

    env = await slack.click("foojob_schedule_change", "foo", user="U0ALICE")  # an operator, not a scheduler
    [refusal] = await replies(slack, env)
    assert "only *schedulers*" in refusal["text"] and slack.modals == {}

    await slack.click("foojob_schedule_change", "foo", user="U0PLANNER")
    view_id = await _opened(slack, 1)
    assert "at 00:00 on day 1 of the month in January" in json.dumps(slack.modals[view_id]["blocks"])

    # The preview follows what is typed.
    await slack.type_in(view_id, "cron", "foojob_schedule_cron_typed", "0 6 * * 1-5",
                        _schedule_values("0 6 * * 1-5", "Europe/London"), user="U0PLANNER")
    await wait_until(lambda: "Monday through Friday" in json.dumps(slack.modals[view_id]["blocks"]),
                     message="the preview of the typed expression")
    assert "06:00:00 GMT" in json.dumps(slack.modals[view_id]["blocks"])
    await slack.type_in(view_id, "cron", "foojob_schedule_cron_typed", "61 6 * * *",
                        _schedule_values("61 6 * * *", "Europe/London"), user="U0PLANNER")
    await wait_until(lambda: "minute: 61 is outside 0-59" in json.dumps(slack.modals[view_id]["blocks"]),
                     message="the preview saying what is wrong")

    # A bad expression on submit: an error on its field, nothing changes; an operator's forged
    # submission likewise.
    ack = await acked(slack, await slack.submit(view_id, _schedule_values("61 6 * * *", "UTC"), user="U0PLANNER"))
    assert ack["response_action"] == "errors" and "minute: 61" in ack["errors"]["cron"]
    ack = await acked(slack, await slack.submit(view_id, _schedule_values("0 6 * * *", "Mars/Base"),
                                                user="U0PLANNER"))
    assert ack["response_action"] == "errors" and "Mars/Base" in ack["errors"]["zone"]
    ack = await acked(slack, await slack.submit(view_id, _schedule_values("0 6 * * *", "UTC"), user="U0ALICE"))
    assert ack["response_action"] == "errors" and "only *schedulers*" in ack["errors"]["cron"]
    assert await db.fetchval("SELECT cron FROM foojob_job_state WHERE job = 'foo'") == "0 0 1 1 *"

    ack = await acked(slack, await slack.submit(view_id, _schedule_values("0 6 * * 1-5", "Europe/London"),
                                                user="U0PLANNER"))
    assert ack == {}
    row = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_job_state WHERE cron = '0 6 * * 1-5'"),
                           message="the schedule applied")
    assert row["timezone"] == "Europe/London" and row["schedule_set_by"] == "U0PLANNER"
    await wait_until(lambda: [b for m, b in slack.chat_calls if m == "chat.postMessage" and b.get("channel") == "C0OPS"
                              and "foo's schedule was changed by <@U0PLANNER>" in b.get("text", "")],
                     message="the change announced in the channel")
    assert slack.refused == []
