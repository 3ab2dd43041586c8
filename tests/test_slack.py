"""Slack end to end: a real service process, slack_sdk's real Socket Mode client, a local Slack."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg

from tests.conftest import Service, catalogue, get_json, row_locked, run_in_progress, wait_until
from tests.slack_sim import APP_TOKEN, BOT_TOKEN, Envelope, SlackSimulator

NEVER_SOON = "0 0 1 1 *"


def slack_env(sim: SlackSimulator, db_url: str, **extra: str) -> dict[str, str]:
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON, "SLACK_BOT_TOKEN": BOT_TOKEN,
           "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": sim.api_url, "SLACK_WEBHOOK_URL": sim.webhook_url}
    env.update(extra)
    return {k: v for k, v in env.items() if v}


async def start(spawn: Callable[..., Service], sim: SlackSimulator, db_url: str, **extra: str) -> Service:
    svc = await spawn(**slack_env(sim, db_url, **extra)).started()
    await wait_until(sim.connected, message="the Socket Mode connection")
    return svc


async def acked(sim: SlackSimulator, envelope: Envelope) -> dict[str, Any]:
    ack = await wait_until(lambda: sim.ack_for(envelope), timeout=3, message="the ack (Slack waits 3 s)")
    assert ack.at - envelope.sent_at < 3.0
    return ack.payload or {}


async def replies(sim: SlackSimulator, envelope: Envelope, n: int = 1) -> list[dict[str, Any]]:
    return await wait_until(lambda: sim.responses_for(envelope) if len(sim.responses_for(envelope)) >= n else None,
                            message=f"{n} response(s) on the response_url")


def button_ids(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


async def test_status_is_acked_at_once_and_answered_with_buttons(spawn, slack: SlackSimulator, db_url: str) -> None:  # type: ignore[no-untyped-def]
    await start(spawn, slack, db_url)
    env = await slack.command("status")
    assert await acked(slack, env) == {}
    [reply] = await replies(slack, env)
    assert reply["response_type"] == "ephemeral"
    assert "foo is active" in reply["text"]
    text = " ".join(b["text"]["text"] for b in reply["blocks"] if b["type"] == "section")
    assert "at 00:00 on day 1 of the month in January" in text and "none yet" in text
    assert button_ids(reply) == ["foojob_pause", "foojob_run_now"]
    pause = reply["blocks"][-1]["elements"][0]
    assert pause["text"]["text"] == "Pause…" and "confirm" not in pause  # it opens a modal (test_slack_modals)


async def test_run_now_runs_after_the_ack_and_answers_on_the_response_url(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                         db_url: str, db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    env = await slack.command("run-now", user="U0ALICE")
    ack = await acked(slack, env)
    assert "Running foo" in ack["text"] and ack["response_type"] == "ephemeral"
    [reply] = await replies(slack, env)
    assert reply["response_type"] == "ephemeral" and "foo succeeded" in reply["text"]
    run = await db.fetchrow("SELECT * FROM foojob_runs")
    assert run["trigger"] == "manual" and run["triggered_by"] == "U0ALICE" and run["status"] == "succeeded"
    await wait_until(lambda: slack.webhook, message="the result in the channel")
    assert f"run #{run['id']}" in slack.webhook[0]["text"] and "<@U0ALICE>" in slack.webhook[0]["text"]


async def test_pause_and_resume_are_announced_with_who_why_and_until(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                     db_url: str, db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    env = await slack.command("pause 1h30m deploying v2", user="U0ALICE")
    await acked(slack, env)
    [reply] = await replies(slack, env)
    assert reply["response_type"] == "ephemeral" and "Paused foo until" in reply["text"]
    state = await db.fetchrow("SELECT * FROM foojob_job_state")
    assert state["paused"] and state["paused_by"] == "U0ALICE" and state["pause_reason"] == "deploying v2"
    await wait_until(lambda: slack.webhook, message="the announcement")
    announcement = slack.webhook[0]["text"]
    assert "paused by <@U0ALICE> until" in announcement and "deploying v2" in announcement

    env = await slack.command("resume", user="U0BOB")
    await acked(slack, env)
    [reply] = await replies(slack, env)
    assert "Resumed foo" in reply["text"]
    await wait_until(lambda: len(slack.webhook) >= 2, message="the resume announcement")
    assert "resumed by <@U0BOB>" in slack.webhook[1]["text"]
    assert not (await db.fetchrow("SELECT paused FROM foojob_job_state"))["paused"]


async def test_without_a_webhook_the_announcement_goes_to_the_channel(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                      db_url: str) -> None:
    await start(spawn, slack, db_url, SLACK_WEBHOOK_URL="")
    env = await slack.command("pause maintenance window", user="U0ALICE")
    await acked(slack, env)
    ephemeral, public = await replies(slack, env, 2)
    assert ephemeral["response_type"] == "ephemeral"
    assert public["response_type"] == "in_channel"
    assert "paused by <@U0ALICE>" in public["text"] and "maintenance window" in public["text"]


async def test_history_lists_the_last_runs(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                          http: aiohttp.ClientSession) -> None:
    svc = await start(spawn, slack, db_url)
    for _ in range(3):
        assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    env = await slack.command("history 2")
    await acked(slack, env)
    [reply] = await replies(slack, env)
    # The last 30 outcomes at a glance first (three runs so far), then the last 2 runs.
    assert reply["blocks"][0]["text"]["text"].count(":large_green_square:") == 3
    assert "3 runs, 0 failed" in reply["blocks"][0]["text"]["text"]
    assert "Last 2 run(s) of foo" in reply["blocks"][1]["text"]["text"]
    assert reply["text"].count("manual by http") == 2


BAD_TEXT = ["frobnicate", "pause 2x", "pause 0m", "pause 1.5h", "pause 1h- deploy", "pause 90min",
            "status now", "history abc", "history 99", "history ²",
            "run-now please", "resume all", "pause 1h " + "x" * 501]


async def test_bad_text_gets_the_usage_and_changes_nothing(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                                           db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    for text in BAD_TEXT:
        env = await slack.command(text)
        ack = await acked(slack, env)
        assert ack["response_type"] == "ephemeral" and "*Usage:*" in ack["text"], text
        assert ":warning:" in ack["text"], text
    for text in ("", "help"):
        ack = await acked(slack, await slack.command(text))
        assert ack["text"].startswith("*Usage:*")
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused OR skip_next IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_control_events") == 0
    assert slack.responses == {}


async def test_users_outside_the_allowlist_are_refused_and_nothing_changes(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                           db_url: str, db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="U0ALICE")
    for text in ("run-now", "pause 1h", "resume"):
        ack = await acked(slack, await slack.command(text, user="U0MALLORY"))
        assert ack["response_type"] == "ephemeral" and "only *operators*" in ack["text"] and "U0MALLORY" in ack["text"]
    for action in ("foojob_run_now", "foojob_pause", "foojob_resume"):
        env = await slack.click(action, "foo", user="U0MALLORY")
        [reply] = await replies(slack, env)
        assert "only *operators*" in reply["text"] and reply["response_type"] == "ephemeral"
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused OR skip_next IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_control_events") == 0
    # Reading is for everyone; the allowed user may act.
    assert "foo is active" in (await replies(slack, await slack.command("status", user="U0MALLORY")))[0]["text"]
    await replies(slack, await slack.command("run-now", user="U0ALICE"))
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1


async def test_buttons_pause_resume_and_run(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                           db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    env = await slack.click("foojob_pause_1h", "foo", user="U0ALICE", message_ts="1.1")
    await acked(slack, env)
    [reply] = await replies(slack, env)
    assert "Paused foo until" in reply["text"]
    assert (await db.fetchrow("SELECT paused_by FROM foojob_job_state"))["paused_by"] == "U0ALICE"

    # The status message now offers Resume instead of Pause.
    status = (await replies(slack, await slack.command("status")))[0]
    assert button_ids(status) == ["foojob_resume", "foojob_run_now"]
    [reply] = await replies(slack, await slack.click("foojob_resume", "foo", user="U0ALICE", message_ts="1.2"))
    assert "Resumed foo" in reply["text"]
    assert not (await db.fetchrow("SELECT paused FROM foojob_job_state"))["paused"]

    [reply] = await replies(slack, await slack.click("foojob_run_now", "foo", user="U0ALICE", message_ts="1.3"))
    assert "foo succeeded" in reply["text"]
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE triggered_by = 'U0ALICE'") == 1


async def test_a_double_click_runs_the_job_once(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                               db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    first = await slack.click("foojob_run_now", "foo", message_ts="2.1")
    second = await slack.click("foojob_run_now", "foo", message_ts="2.1")
    [a] = await replies(slack, first)
    [b] = await replies(slack, second)
    assert sorted(["foo succeeded" in a["text"], "foo succeeded" in b["text"]]) == [False, True]
    assert "already taken care of" in (b if "succeeded" in a["text"] else a)["text"]
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1
    # A click on another message's button is a new request.
    await replies(slack, await slack.click("foojob_run_now", "foo", message_ts="2.2"))
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 2


async def test_run_again_on_a_failure_message(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                             db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    await db.execute("ALTER TABLE foo ADD CONSTRAINT too_late CHECK (col_timestamp < '2000-01-01')")
    [reply] = await replies(slack, await slack.command("run-now"))
    assert "foo failed" in reply["text"] and "too_late" in reply["text"]
    await wait_until(lambda: slack.webhook, message="the failure in the channel")
    failure = slack.webhook[0]
    assert button_ids(failure) == ["foojob_run_now", "foojob_pause_1h"]
    await db.execute("ALTER TABLE foo DROP CONSTRAINT too_late")
    button = failure["blocks"][-1]["elements"][0]
    [again] = await replies(slack, await slack.click(button["action_id"], button["value"], message_ts="3.1"))
    assert "foo succeeded" in again["text"]
    # Pause 1h: as `/foojob pause 1h`, the allowlist applies (everyone, here).
    pause = failure["blocks"][-1]["elements"][1]
    [paused] = await replies(slack, await slack.click(pause["action_id"], pause["value"], message_ts="3.1"))
    assert "Paused foo until" in paused["text"]
    state = await db.fetchrow("SELECT paused, paused_by, resume_at - paused_at AS span FROM foojob_job_state")
    assert state["paused"] and state["paused_by"] == "U0ALICE"
    assert abs(state["span"] - timedelta(hours=1)) < timedelta(seconds=1)


async def test_run_now_while_running_says_so(spawn, slack: SlackSimulator, db_url: str) -> None:  # type: ignore[no-untyped-def]
    await start(spawn, slack, db_url)
    async with row_locked(db_url):
        first = await slack.command("run-now")
        await acked(slack, first)
        await run_in_progress(db_url, "the first run in progress")
        second = await slack.command("run-now")
        [reply] = await replies(slack, second)
        assert "already running" in reply["text"]
    assert "foo succeeded" in (await replies(slack, first))[0]["text"]


async def test_app_home_shows_status_and_recent_runs(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                                    http: aiohttp.ClientSession) -> None:
    svc = await start(spawn, slack, db_url)
    for _ in range(2):
        assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await slack.open_home(user="U0ALICE")
    await wait_until(lambda: slack.published, message="views.publish")
    view = slack.published[0]
    assert view["user_id"] == "U0ALICE" and view["view"]["type"] == "home"
    blocks = view["view"]["blocks"]
    text = str(blocks)
    assert "foo* is *active" in text and "Last 2 runs" in text
    recent = [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
    assert len(recent) == 2 and all("manual by http" in line for line in recent)
    assert button_ids({"blocks": blocks}) == ["foojob_pause", "foojob_run_now"]


async def test_the_client_reconnects_when_slack_asks_and_keeps_working(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                       db_url: str,
                                                                       http: aiohttp.ClientSession) -> None:
    svc = await start(spawn, slack, db_url)
    assert slack.hellos == 1  # one socket (start-up also asked apps.connections.open once, to check the token)
    assert (await get_json(http, "GET", f"{svc.url}/healthz"))[1]["slack"] == "connected"
    async with http.get(f"{svc.url}/metrics") as resp:
        assert "foojob_slack_socket_connected 1.0" in await resp.text()
    await slack.refresh()
    await wait_until(lambda: slack.hellos == 2 and slack.connected(),
                     message="a new connection after refresh_requested")
    [reply] = await replies(slack, await slack.command("status"))
    assert "foo is active" in reply["text"]
    # A dropped socket is noticed: /healthz says so, and the client comes back by itself.
    await slack.drop()
    await wait_until(lambda: _slack_health(http, svc.url, "disconnected"), message="healthz: disconnected")
    await wait_until(lambda: slack.connected(), timeout=30, message="the client to reconnect")
    await wait_until(lambda: _slack_health(http, svc.url, "connected"), message="healthz: connected")


async def _slack_health(http: aiohttp.ClientSession, url: str, want: str) -> bool:
    status, body = await get_json(http, "GET", f"{url}/healthz")
    return bool(body["slack"] == want and status == 200)


async def test_no_token_or_webhook_url_in_the_logs(spawn, slack: SlackSimulator, db_url: str) -> None:  # type: ignore[no-untyped-def]
    svc = await start(spawn, slack, db_url, LOG_LEVEL="DEBUG")
    for text in ("run-now", "status", "pause 5m", "resume", "bogus"):
        await acked(slack, await slack.command(text))
    await slack.refresh()
    await wait_until(lambda: slack.hellos == 2, message="the reconnect")
    await wait_until(lambda: len(slack.webhook) >= 3, message="webhook messages")
    assert await svc.stop() == 0
    logs = svc.stderr() + svc.stdout()
    assert "apps.connections.open" in logs or "Socket Mode" in logs  # the debug logs were on
    for secret in (BOT_TOKEN, APP_TOKEN, slack.webhook_url, "SIMULATEDHOOKSECRET", "SIMULATEDBOTTOKEN",
                   "SIMULATEDAPPTOKEN"):
        assert secret not in logs, f"{secret[:12]}… appears in the logs"
    # Not even because the log filter caught it: no code tried to log a secret.
    assert "a secret was redacted" not in logs


async def test_healthz_is_503_when_the_socket_has_been_down_too_long(db_url: str, slack: SlackSimulator,
                                                                     http: aiohttp.ClientSession) -> None:
    from aiohttp import web

    from bot.config import Secret
    from bot.control import Control
    from bot.db import Queries, create_pool
    from bot.http import Backend, build_app
    from bot.metrics import Metrics
    from bot.notify import StdoutNotifier
    from bot.runner import Runner
    from bot.slack.app import SlackSurface

    tz = ZoneInfo("UTC")
    pool = await create_pool(db_url)
    notifier = StdoutNotifier()
    control = Control(pool, Queries(), Runner(pool, Queries(), catalogue(tz=tz), notifier, tz),
                      catalogue(NEVER_SOON, tz=tz), tz, notifier)
    # The service waits a minute before calling the socket down; this one waits half a second.
    surface = SlackSurface(bot_token=Secret(BOT_TOKEN), app_token=Secret(APP_TOKEN), api_url=slack.api_url,
                           allowed_users=frozenset(), control=control, timezone=tz, announce_in_channel=False,
                           down_after_s=0.5)
    backend = Backend()
    backend.control, backend.slack_health, backend.slack_enabled = control, surface.health, True
    runner = web.AppRunner(build_app(backend, token=None, tz=tz, metrics_=Metrics("test"), jobs=["foo"],
                                     default_job="foo"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/healthz"
    try:
        await surface.start()
        await wait_until(lambda: _health_is(http, url, 200, "connected"), message="connected")
        await slack.stop()  # Slack is gone and stays gone
        await wait_until(lambda: _health_is(http, url, 200, "disconnected"), message="disconnected, still 200")
        await wait_until(lambda: _health_is(http, url, 503, "disconnected"), message="503 once down too long")
    finally:
        await surface.close(1)
        await runner.cleanup()
        await pool.close()


async def _health_is(http: aiohttp.ClientSession, url: str, status: int, slack_state: str) -> bool:
    got, body = await get_json(http, "GET", url)
    return got == status and body["slack"] == slack_state


async def test_home_tab_buttons_answer_on_the_home_tab_and_act_once(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                    db_url: str, db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    await slack.open_home(user="U0ALICE")
    await wait_until(lambda: slack.published, message="the Home tab")
    # A double click on the Home tab's Run now: one run, and the tab shows the answer on top.
    await slack.click_home("foojob_run_now", "foo", user="U0ALICE")
    await slack.click_home("foojob_run_now", "foo", user="U0ALICE")
    await wait_until(lambda: len(slack.published) >= 3, message="the Home tab published again twice")
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1
    notices = [str(p["view"]["blocks"][1]) for p in slack.published[1:]]
    assert sum("foo* succeeded" in n for n in notices) == 1
    assert sum("already taken care of" in n for n in notices) == 1
    # Pause from the Home tab, on the newest version of the view: its modal, then the tab says so.
    await slack.click_home("foojob_pause", "foo", user="U0ALICE")
    await wait_until(lambda: slack.modals, message="the pause modal")
    [view_id] = slack.modals
    await slack.submit(view_id, {"duration": {"value": {"selected_option": {"value": "1h"}}}, "reason": {}})
    await wait_until(lambda: db.fetchval("SELECT paused FROM foojob_job_state"), message="paused from Home")
    await wait_until(lambda: "Resume" in str(slack.published[-1]["view"]["blocks"]), message="Home shows Resume")
    assert slack.responses == {}  # nothing was sent to a response_url: a view has none


async def test_buttons_on_ephemeral_messages_work(spawn, slack: SlackSimulator, db_url: str,  # type: ignore[no-untyped-def]
                                                 db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url)
    env = await slack.click("foojob_pause_1h", "foo", message_ts="5.1", ephemeral=True)
    [reply] = await replies(slack, env)
    assert "Paused foo" in reply["text"]
    assert (await db.fetchrow("SELECT paused FROM foojob_job_state"))["paused"]


async def test_acks_never_wait_for_the_database(spawn, slack: SlackSimulator, db_url: str) -> None:  # type: ignore[no-untyped-def]
    await start(spawn, slack, db_url)
    conn = await asyncpg.connect(db_url)
    try:
        tr = conn.transaction()
        await tr.start()
        # Every table a command or click touches is locked: any database work would wait here.
        await conn.execute("LOCK TABLE foojob_job_state, foojob_runs, foojob_request_keys, foojob_outbox, foo "
                           "IN ACCESS EXCLUSIVE MODE")
        sent = [await slack.command(text) for text in ("status", "history", "pause 1h", "resume", "run-now")]
        sent += [await slack.click(action, "foo", message_ts=f"6.{i}")
                 for i, action in enumerate(("foojob_run_now", "foojob_pause_1h", "foojob_resume"))]
        for env in sent:
            await acked(slack, env)  # all acked while the database is blocked
        assert slack.responses == {}  # and nothing answered yet: the answers need the database
        await tr.rollback()
    finally:
        await conn.close()
    for env in sent:
        await replies(slack, env)


async def test_text_from_users_cannot_ping_the_channel_and_long_text_fits(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                         db_url: str,
                                                                         http: aiohttp.ClientSession) -> None:
    svc = await start(spawn, slack, db_url)
    reason = "<!channel> deploy & rollback " + "x" * 460
    assert (await get_json(http, "POST", f"{svc.url}/pause", json={"reason": reason}))[0] == 200
    await wait_until(lambda: slack.webhook, message="the announcement")
    announcement = slack.webhook[0]["text"]
    assert "<!channel>" not in announcement and "&lt;!channel&gt; deploy &amp; rollback" in announcement
    [status] = await replies(slack, await slack.command("status"))
    assert "&lt;!channel&gt;" in str(status["blocks"]) and "<!channel>" not in str(status["blocks"])
    assert slack.refused == []  # nothing broke Block Kit's limits


async def test_shutdown_finishes_a_command_in_progress_without_reconnecting(spawn, slack: SlackSimulator,  # type: ignore[no-untyped-def]
                                                                           db_url: str) -> None:
    svc = await start(spawn, slack, db_url)
    async with row_locked(db_url):
        env = await slack.command("run-now")
        await acked(slack, env)
        await run_in_progress(db_url, "the run in progress")
        svc.proc.send_signal(signal.SIGTERM)
        await svc.wait_log("shutting down")
        await wait_until(lambda: not slack.connected(), message="the socket to close")
    assert await svc.wait_exit() == 0
    [reply] = slack.responses_for(env)
    assert "foo succeeded" in reply["text"]  # the command in progress was answered
    assert slack.hellos == 1  # and the client did not come back during the shutdown
