"""Slack roles: operators and schedulers, each users and Slack user groups, checked on every entry."""

from __future__ import annotations

import json

import asyncpg

from tests.conftest import Spawner, wait_until
from tests.slack_sim import SlackSimulator
from tests.test_slack import acked, replies, start


async def _paused(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval("SELECT paused FROM foojob_job_state WHERE job = 'foo'"))


async def test_a_user_groups_members_may_act_and_others_are_told_the_role(
        spawn: Spawner, slack: SlackSimulator, db_url: str, db: asyncpg.Connection) -> None:
    slack.groups["S0OPS"] = ["U0ALICE", "U0BOB"]
    svc = await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="S0OPS,U0CAROL")

    # A member of the group may pause (the group is read after the ack: Slack's 3 s hold).
    env = await slack.command("pause 1h", user="U0BOB")
    await acked(slack, env)
    await replies(slack, env)
    assert await _paused(db)
    # Someone else is refused, and told which role it takes; nothing changes.
    env = await slack.command("resume", user="U0MALLORY")
    await acked(slack, env)
    [refusal] = await replies(slack, env)
    assert "only *operators*" in refusal["text"] and "U0MALLORY" in refusal["text"]
    assert refusal["response_type"] == "ephemeral" and await _paused(db)
    # A listed user needs no group read; a button by an outsider is refused the same way.
    env = await slack.click("foojob_resume", "foo", user="U0MALLORY")
    [refusal] = await replies(slack, env)
    assert "only *operators*" in refusal["text"] and await _paused(db)
    reads = slack.api_calls.count("usergroups.users.list")
    env = await slack.command("resume", user="U0CAROL")
    await replies(slack, env)
    assert not await _paused(db) and slack.api_calls.count("usergroups.users.list") == reads

    # Members are kept (at most 5 minutes): a second check does not ask Slack again...
    await replies(slack, await slack.command("pause", user="U0ALICE"))
    assert slack.api_calls.count("usergroups.users.list") == reads
    # ...but Slack's word that the group changed takes effect at once: Bob is out.
    slack.groups["S0OPS"] = ["U0ALICE"]
    await slack.members_changed("S0OPS")
    await wait_until(lambda: _refused(slack, "U0BOB"), message="Bob refused once he left the group")
    assert await _paused(db)
    assert svc.stderr().count("not one of the operators") >= 3


async def _refused(slack: SlackSimulator, user: str, socket: int = -1) -> bool:
    env = await slack.command("resume", user=user, socket=socket)
    [reply] = await replies(slack, env)
    return "only *operators*" in reply["text"]


async def test_a_groups_change_reaches_every_replica(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                     db: asyncpg.Connection) -> None:
    # Slack tells one replica (one Socket Mode connection) that a group changed; a removed member
    # loses the right on every replica at once, not 5 minutes later on the others.
    slack.groups["S0OPS"] = ["U0ALICE", "U0BOB"]
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="S0OPS")
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="S0OPS")
    await wait_until(lambda: len([ws for ws in slack.sockets if not ws.closed]) == 2, message="two replicas on Slack")
    for socket in (0, 1):  # each replica reads the group, and keeps it
        await replies(slack, await slack.command("pause", user="U0BOB", socket=socket))
        await replies(slack, await slack.command("resume", user="U0BOB", socket=socket))
    reads = slack.api_calls.count("usergroups.users.list")
    assert reads == 2 and not await _paused(db)
    slack.groups["S0OPS"] = ["U0ALICE"]
    await slack.members_changed("S0OPS", socket=0)
    await wait_until(lambda: _refused(slack, "U0BOB", socket=1), timeout=5,
                     message="Bob refused on the other replica too")
    assert not await _paused(db) and slack.api_calls.count("usergroups.users.list") == reads + 1


async def test_a_group_that_cannot_be_read_refuses_and_says_why(
        spawn: Spawner, slack: SlackSimulator, db_url: str, db: asyncpg.Connection) -> None:
    slack.group_errors["S0OPS"] = "missing_scope"
    svc = await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="S0OPS")
    for _ in range(3):
        env = await slack.command("run-now", user="U0ALICE")
        [refusal] = await replies(slack, env)
        assert "S0OPS cannot be read (missing_scope)" in refusal["text"] and "usergroups:read" in refusal["text"]
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 0
    assert svc.stderr().count("cannot be read (missing_scope)") == 1  # one log line a minute


async def test_only_schedulers_may_apply_a_schedule(
        spawn: Spawner, slack: SlackSimulator, db_url: str, db: asyncpg.Connection) -> None:
    slack.groups["S0PLAN"] = ["U0PLANNER"]
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="U0ALICE,U0PLANNER", SLACK_SCHEDULERS="S0PLAN")
    # An operator may run and pause, but not preview nor Apply a schedule change.
    env = await slack.command("schedule set 0 6 * * *", user="U0ALICE")
    await acked(slack, env)
    [refusal] = await replies(slack, env)
    assert "only *schedulers*" in refusal["text"] and "SLACK_SCHEDULERS" in refusal["text"]
    apply = json.dumps({"job": "foo", "cron": "0 6 * * *", "timezone": "UTC"})
    env = await slack.click("foojob_schedule_apply", apply, user="U0ALICE", ephemeral=True)
    [refusal] = await replies(slack, env)  # a forged or stale Apply by an operator: refused all the same
    assert "only *schedulers*" in refusal["text"]
    assert await db.fetchval("SELECT cron FROM foojob_job_state WHERE job = 'foo'") != "0 6 * * *"
    # A scheduler (through the group) may.
    env = await slack.command("schedule set 0 6 * * *", user="U0PLANNER")
    [preview] = await replies(slack, env)
    assert "Apply" in json.dumps(preview["blocks"])
    env = await slack.click("foojob_schedule_apply", apply, user="U0PLANNER", ephemeral=True)
    [applied] = await replies(slack, env)
    assert "Applied" in applied["text"]
    assert await db.fetchval("SELECT cron FROM foojob_job_state WHERE job = 'foo'") == "0 6 * * *"
    await replies(slack, await slack.command("pause", user="U0ALICE"))  # operators keep their own verbs
    assert await _paused(db)
