"""Slack, in a channel: one card per run edited in place, details in its thread, what must notify
as new messages, Slack's pace and refusals kept — and a backlog that folds its successes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import Service, Spawner, WebhookSink, get_json, wait_until
from tests.slack_sim import SlackSimulator
from tests.test_slack import start

NEVER_SOON = "0 0 1 1 *"
JOBS = {
    "slow": "SELECT pg_sleep(3) IS NOT NULL AS slept;",
    "quick": "SELECT 1 AS one;",
    "verbose": "DO $$ BEGIN RAISE EXCEPTION '%', repeat('why ', 150); END $$;",
    "many": "SELECT n FROM generate_series(1, 12) AS n;",
    "broken": "SELECT 1 / 0;",
    "elsewhere": "-- channel: C0ELSE\nSELECT 1 AS one;",
}


def _jobs(folder: Path) -> str:
    folder.mkdir()
    for name, sql in JOBS.items():
        (folder / f"{name}.sql").write_text(f"-- cron: {NEVER_SOON}\n{sql}\n")
    return str(folder)


def _calls(slack: SlackSimulator, method: str, words: str) -> list[dict[str, Any]]:
    return [body for called, body in slack.chat_calls if called == method and words in json.dumps(body)]


async def _run_now(http: aiohttp.ClientSession, svc: Service, job: str) -> None:
    await get_json(http, "POST", f"{svc.url}/jobs/{job}/runNow")


async def test_a_run_is_one_card_edited_in_place(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                db: asyncpg.Connection, http: aiohttp.ClientSession,
                                                tmp_path: Path) -> None:
    slack.outside.add("C0ELSE")
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"),
                      FOOJOB_ALERT_AFTER="2", FOOJOB_ALERT_MENTION="<!channel>")
    assert "SLACK_CHANNEL is set: results and announcements go to C0OPS" in svc.stderr()

    # A run longer than 2 s: its card first, then that same message edited into the result.
    await _run_now(http, svc, "slow")
    [card] = await wait_until(lambda: _calls(slack, "chat.postMessage", "slow running since"), message="the card")
    assert card["channel"] == "C0OPS"
    assert re.search(r"running since \d\d:\d\d:\d\d UTC, run #1$", card["text"])  # the time; the date is the message's
    [edit] = await wait_until(lambda: _calls(slack, "chat.update", "slow succeeded"), message="the card edited")
    ts = next(t for t, m in slack.messages.items() if "slow" in m["text"])
    assert edit["ts"] == ts and slack.messages[ts]["edits"] == 1 and "slow succeeded" in slack.messages[ts]["text"]
    assert len(_calls(slack, "chat.postMessage", "slow")) == 1  # one message for the run

    # A short run: only its result, no edit.
    await _run_now(http, svc, "quick")
    await wait_until(lambda: _calls(slack, "chat.postMessage", "quick succeeded"), message="the result")
    assert not _calls(slack, "chat.postMessage", "quick running") and not _calls(slack, "chat.update", "quick")

    # What does not fit on a card goes in its thread: a long error, rows beyond the first 5.
    await _run_now(http, svc, "verbose")
    [reply] = await wait_until(lambda: _calls(slack, "chat.postMessage", ", the whole error:"), message="the reply")
    [post] = _calls(slack, "chat.postMessage", "verbose failed")
    verbose_ts = next(t for t, m in slack.messages.items() if m is not None and "verbose failed" in m["text"])
    assert reply["thread_ts"] == verbose_ts and json.dumps(reply).count("why") >= 150
    assert post["text"].count("why") < 80  # the card keeps 300 characters of it
    await _run_now(http, svc, "many")
    [rows] = await wait_until(lambda: _calls(slack, "chat.postMessage", "rows 6 to 12"), message="the rows' reply")
    assert rows["thread_ts"] in slack.messages and '"n": 12' in rows["text"]

    # The alert is a new message, with its mention (an edit would notify nobody); the card says it
    # without the mention.
    await _run_now(http, svc, "broken")
    await _run_now(http, svc, "broken")
    [alert] = await wait_until(lambda: _calls(slack, "chat.postMessage", "<!channel>"), message="the alert")
    assert "broken has failed 2 times in a row" in alert["text"] and "thread_ts" not in alert
    assert len(_calls(slack, "chat.postMessage", "broken has failed 2 times")) == 2  # the card, and the alert

    # A channel the bot is not in: the message kept aside with its reason, said on /healthz and once
    # in the log; never lost silently.
    await _run_now(http, svc, "elsewhere")
    row = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_outbox WHERE channel = 'C0ELSE' "
                                               "AND failed_at IS NOT NULL"), message="the refused message kept")
    assert "not_in_channel" in row["last_error"] and "elsewhere succeeded" in row["payload"]["text"]
    status, health = await get_json(http, "GET", f"{svc.url}/healthz")
    assert status == 200 and health["slackChannel"] == "not_in_channel (C0ELSE)"
    assert svc.stderr().count("cannot post in channel C0ELSE (not_in_channel)") == 1
    assert slack.webhook == [] and slack.refused == []  # nothing through the webhook while SLACK_CHANNEL is set


async def test_cards_never_hold_up_runs_and_other_routes_keep_theirs(spawn: Spawner, slack: SlackSimulator,
                                                                    db_url: str, http: aiohttp.ClientSession,
                                                                    tmp_path: Path) -> None:
    # A pool of 2 and three runs longer than 2 s at once: each run holds a connection and its card
    # wants another; the cards wait 2 s at most, the runs never wait for them.
    folder = tmp_path / "jobs"
    folder.mkdir()
    for n in range(3):
        (folder / f"slow{n}.sql").write_text(f"-- cron: {NEVER_SOON}\nSELECT pg_sleep(3) IS NOT NULL AS slept;\n")
    (folder / "elsewhere.sql").write_text(f"-- cron: {NEVER_SOON}\n-- channel: C0ELSE\nSELECT 1 AS one;\n")
    # No webhook and no SLACK_CHANNEL: only `elsewhere` has a channel; the rest goes to stdout.
    svc = await start(spawn, slack, db_url, SLACK_WEBHOOK_URL="", FOOJOB_JOBS_DIR=str(folder),
                      DATABASE_POOL_SIZE="2")
    async with asyncio.timeout(20):
        answers = await asyncio.gather(*(get_json(http, "POST", f"{svc.url}/jobs/slow{n}/runNow") for n in range(3)))
    assert [status for status, _ in answers] == [200, 200, 200]
    await wait_until(lambda: svc.stdout().count("succeeded") >= 3, message="their results, on stdout")
    await _run_now(http, svc, "elsewhere")
    await wait_until(lambda: _calls(slack, "chat.postMessage", "elsewhere succeeded"), message="the channel's result")
    assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await wait_until(lambda: "foo succeeded" in svc.stdout(), message="foo's result on stdout, not set aside")
    assert "no SLACK_WEBHOOK_URL" not in svc.stderr()


async def test_an_answer_slack_will_not_change_sets_the_message_aside(spawn: Spawner, slack: SlackSimulator,
                                                                      db_url: str, db: asyncpg.Connection,
                                                                      http: aiohttp.ClientSession,
                                                                      tmp_path: Path) -> None:
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"))
    slack.chat_script.append(("chat.postMessage", "restricted_action_thread_only_channel"))
    await _run_now(http, svc, "quick")
    await _run_now(http, svc, "many")
    await wait_until(lambda: _calls(slack, "chat.postMessage", "rows 6 to 12"), message="the queue moving on")
    row = await db.fetchrow("SELECT * FROM foojob_outbox WHERE failed_at IS NOT NULL")
    assert "restricted_action_thread_only_channel" in row["last_error"] and row["attempts"] == 1


async def test_a_rate_limited_edit_waits_for_retry_after(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                         http: aiohttp.ClientSession, tmp_path: Path) -> None:
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"))
    slack.chat_script.append(("chat.update", (429, 2)))
    await _run_now(http, svc, "slow")
    await wait_until(lambda: len(_calls(slack, "chat.update", "slow succeeded")) == 2, timeout=15,
                     message="the edit, after Slack's Retry-After")
    assert "rate limited by Slack" in svc.stderr()
    ts = next(t for t, m in slack.messages.items() if "slow" in m["text"])
    assert slack.messages[ts]["edits"] == 1 and len(_calls(slack, "chat.postMessage", "slow")) == 1


async def test_a_channel_that_must_wait_holds_up_only_its_own_messages(spawn: Spawner, slack: SlackSimulator,
                                                                       db_url: str, http: aiohttp.ClientSession,
                                                                       tmp_path: Path) -> None:
    # Slack asks for 30 s on one channel (Retry-After): the other channel's results go on at once,
    # and each channel keeps its order.
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"))
    slack.chat_script.append(("chat.postMessage", (429, 30)))
    await _run_now(http, svc, "elsewhere")  # C0ELSE: told to wait 30 s
    await wait_until(lambda: _calls(slack, "chat.postMessage", "elsewhere succeeded"), message="the refused post")
    await _run_now(http, svc, "elsewhere")  # queued behind it, in C0ELSE
    await _run_now(http, svc, "quick")  # C0OPS
    await wait_until(lambda: any("quick succeeded" in m["text"] for m in slack.messages.values()), timeout=8,
                     message="the other channel's result, without waiting 30 s")
    assert not any("elsewhere" in m["text"] for m in slack.messages.values())  # C0ELSE still waits, in order
    assert "rate limited by Slack" in svc.stderr()


async def test_a_backlog_folds_long_runs_cards_with_their_edits(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                                 db: asyncpg.Connection, http: aiohttp.ClientSession,
                                                                 tmp_path: Path) -> None:
    # Slack holds the channel back for 20 s while a run longer than 2 s (a card, then its edit)
    # runs again and again, and another job's results pile up: more than 20 messages wait. The long
    # runs' cards and edits fold into one line; nothing says "running" for a run long finished.
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "long.sql").write_text(f"-- cron: {NEVER_SOON}\nSELECT pg_sleep(2.1) IS NOT NULL AS slept;\n")
    (folder / "quick.sql").write_text(f"-- cron: {NEVER_SOON}\nSELECT 1 AS one;\n")
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=str(folder))
    slack.chat_script.append(("chat.postMessage", (429, 20)))

    async def long_runs() -> None:
        for _ in range(6):
            await _run_now(http, svc, "long")

    async def quick_runs() -> None:
        for _ in range(10):
            await _run_now(http, svc, "quick")

    longs_task = asyncio.ensure_future(long_runs())
    await wait_until(lambda: _calls(slack, "chat.postMessage", "long running since"), message="the first card, held")
    await asyncio.gather(longs_task, quick_runs())
    assert await db.fetchval("SELECT count(*) FROM foojob_outbox WHERE delivered_at IS NULL") > 20
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM foojob_outbox WHERE delivered_at IS NULL"),
                     timeout=40, message="the backlog delivered")
    longs = [m["text"] for m in slack.messages.values() if "long" in m["text"]]
    assert longs == [longs[0]] and "long: 6 runs succeeded" in longs[0], longs
    assert not _calls(slack, "chat.update", "long")
    assert sum("quick succeeded" in m["text"] or "quick: " in m["text"] for m in slack.messages.values()) >= 1


async def test_a_busy_channel_does_not_hold_another_to_its_pace(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                                 http: aiohttp.ClientSession, tmp_path: Path) -> None:
    # Eight results wait for C0OPS, which Slack takes about one a second; then one for C0ELSE, whose
    # own pace is untouched: it goes at once, not behind the eight.
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"))
    for _ in range(8):
        await _run_now(http, svc, "quick")
    await _run_now(http, svc, "elsewhere")
    await wait_until(lambda: len(_calls(slack, "chat.postMessage", "quick succeeded")) == 8, timeout=20,
                     message="the eight results")
    order = [json.dumps(body) for method, body in slack.chat_calls if method == "chat.postMessage"]
    assert any("elsewhere succeeded" in o for o in order[:7]), order


async def test_a_post_whose_answer_was_lost_is_not_posted_twice(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                                db: asyncpg.Connection, http: aiohttp.ClientSession,
                                                                tmp_path: Path) -> None:
    # Slack takes the card and the connection drops before its answer: the retry reads the channel
    # back, finds the card by its metadata, and edits that one. Same for a reply in its thread.
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"))
    slack.chat_script.append(("chat.postMessage", "lost"))
    await _run_now(http, svc, "slow")
    await wait_until(lambda: _calls(slack, "chat.update", "slow succeeded"), timeout=15, message="the card edited")
    cards = [m for m in slack.messages.values() if "slow" in m["text"]]
    assert len(cards) == 1 and cards[0]["edits"] == 1 and "slow succeeded" in cards[0]["text"]
    assert "conversations.history" in slack.api_calls
    assert "was already in channel C0OPS (an earlier attempt's answer was lost): not posted twice" in svc.stderr()
    row = await db.fetchrow("SELECT * FROM foojob_outbox WHERE method = 'post' AND card IS NOT NULL")
    assert row["delivered_at"] is not None and row["ts"] == cards[0]["ts"]

    slack.chat_script.append(("chat.postMessage", "lost in thread"))  # the thread reply's answer is lost
    await _run_now(http, svc, "many")
    await wait_until(lambda: any("rows 6 to 12" in m["text"] for m in slack.messages.values()), message="the reply")
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM foojob_outbox WHERE delivered_at IS NULL"),
                     timeout=15, message="the queue delivered")
    assert sum("rows 6 to 12" in m["text"] for m in slack.messages.values()) == 1
    assert "conversations.replies" in slack.api_calls


async def test_a_lost_answer_without_the_history_scope_posts_again_and_says_so(spawn: Spawner, slack: SlackSimulator,
                                                                               db_url: str, http: aiohttp.ClientSession,
                                                                               tmp_path: Path) -> None:
    # The app cannot read the channel back: at least once (two cards), never lost, and the log says why.
    slack.unreadable.add("C0OPS")
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=_jobs(tmp_path / "jobs"))
    slack.chat_script.append(("chat.postMessage", "lost"))
    await _run_now(http, svc, "quick")
    await wait_until(lambda: sum("quick succeeded" in m["text"] for m in slack.messages.values()) == 2, timeout=15,
                     message="the result posted again")
    assert "cannot read channel C0OPS back (conversations.history: missing_scope)" in svc.stderr()


async def test_a_backlog_folds_its_successes_and_never_a_failure(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                                 webhook: WebhookSink) -> None:
    webhook.down = True  # Slack is away: results pile up, one a second
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON="* * * * * *", SLACK_WEBHOOK_URL=webhook.url).started()
    await wait_until(lambda: _many(db, 10), timeout=30, message="a backlog")
    await db.execute("ALTER TABLE foo RENAME TO foo_away")  # the next fires fail...
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE status = 'failed'"),
                     message="a failure")
    await db.execute("ALTER TABLE foo_away RENAME TO foo")  # ...and then they succeed again
    await wait_until(lambda: _many(db, 25), timeout=40, message="more than 20 messages waiting")
    webhook.down = False
    await wait_until(lambda: any("runs succeeded" in t for t in webhook.texts()), timeout=40, message="a fold")
    assert await svc.stop() == 0
    texts = webhook.texts()
    runs = await db.fetchval("SELECT count(*) FROM foojob_runs")
    assert len(texts) < runs / 2  # far fewer messages than runs
    # Failures are never folded: every failure message was (or is still to be) delivered as itself.
    folded = await db.fetch("SELECT payload->>'text' AS text FROM foojob_outbox WHERE last_error LIKE 'folded%'")
    assert folded and all("succeeded" in r["text"] for r in folded)
    # Each folded line counts every run folded into it, over every attempt to deliver it.
    for head in await db.fetch("SELECT id, payload->>'text' AS text FROM foojob_outbox WHERE payload->>'text' LIKE "
                               "'%runs succeeded%' AND delivered_at IS NOT NULL AND last_error IS NULL"):
        into = await db.fetchval("SELECT count(*) FROM foojob_outbox WHERE last_error = $1",
                                 f"folded into message {head['id']}")
        assert f": {into + 1} runs succeeded" in head["text"], (into, head["text"])
    # Order is kept: the failure comes after a success, and every message naming its run comes in
    # the order of the runs (a fold takes the place of the first run it folds, never passes one).
    first_failure = next(i for i, t in enumerate(texts) if "foo failed" in t)
    assert any("succeeded" in t for t in texts[:first_failure])
    assert webhook.run_ids() == sorted(webhook.run_ids()) and len(webhook.run_ids()) >= 2
    # No fold reaches past a message that is not a success: nothing of what it stands for comes
    # after a failure that was delivered after it.
    passed = await db.fetchval("""
        SELECT count(*) FROM foojob_outbox f
        JOIN foojob_outbox h ON f.last_error = 'folded into message ' || h.id
        WHERE EXISTS (SELECT 1 FROM foojob_outbox x WHERE x.id > h.id AND x.id < f.id
                      AND x.kind IS DISTINCT FROM 'success' AND x.method <> 'reply')""")
    assert passed == 0


@pytest.mark.timeout(200)
async def test_a_slow_slack_keeps_the_backlog_bounded(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                      webhook: WebhookSink) -> None:
    # A result a second, and a webhook that takes 3 s to answer each: without folding the backlog
    # would grow for ever (one message every 1.5 s more than Slack takes); it stays bounded.
    webhook.slow_s = 3.0
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON="* * * * * *", SLACK_WEBHOOK_URL=webhook.url).started()
    depths: list[int] = []

    async def folded_twice() -> bool:
        depths.append(await _backlog(db))
        return sum("runs succeeded" in t for t in webhook.texts()) >= 2

    await wait_until(folded_twice, timeout=120, interval=0.5, message="two folds")
    assert await svc.stop() == 0
    assert max(depths) <= 25, depths  # 20 waiting, then a fold; a few more while its POST takes 3 s
    assert webhook.run_ids() == sorted(webhook.run_ids())


async def _backlog(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"))


async def _many(db: asyncpg.Connection, count: int) -> bool:
    return await _backlog(db) >= count


async def test_a_run_that_never_commits_does_not_leave_its_card_running(spawn: Spawner, slack: SlackSimulator,
                                                                       db_url: str, db: asyncpg.Connection,
                                                                       http: aiohttp.ClientSession,
                                                                       tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "sleepy.sql").write_text(f"-- cron: {NEVER_SOON}\nSELECT pg_sleep(30) IS NOT NULL AS slept;\n")
    svc = await start(spawn, slack, db_url, SLACK_CHANNEL="C0OPS", FOOJOB_JOBS_DIR=str(folder))
    running = asyncio.ensure_future(get_json(http, "POST", f"{svc.url}/jobs/sleepy/runNow"))
    await wait_until(lambda: _calls(slack, "chat.postMessage", "sleepy running since"), message="the card")
    # The run's connection is cut (an admin, a failover): nothing of the run is kept...
    await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                     "AND pid <> pg_backend_pid()")
    status, _ = await running
    assert status in (500, 503)
    # ...and its card says so, instead of "running" for ever.
    [edit] = await wait_until(lambda: _calls(slack, "chat.update", "did not finish"), message="the card edited")
    ts = next(t for t, m in slack.messages.items() if "sleepy" in m["text"])
    assert edit["ts"] == ts and "nothing of it was kept" in slack.messages[ts]["text"]


async def test_the_card_of_a_replica_killed_mid_run_says_so_at_the_next_start(
        spawn: Spawner, slack: SlackSimulator, db_url: str, db: asyncpg.Connection, http: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "sleepy.sql").write_text(f"-- cron: {NEVER_SOON}\nSELECT pg_sleep(30) IS NOT NULL AS slept;\n")
    env = {"SLACK_CHANNEL": "C0OPS", "FOOJOB_JOBS_DIR": str(folder)}
    first = await start(spawn, slack, db_url, **env)
    running = asyncio.ensure_future(get_json(http, "POST", f"{first.url}/jobs/sleepy/runNow"))
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_outbox WHERE payload->>'text' LIKE "
                                         "'%sleepy running since%' AND delivered_at IS NOT NULL"),
                     message="the card posted (and marked so)")
    first.kill()  # mid-run: the run's transaction goes with it, its card stays "running"
    with contextlib.suppress(aiohttp.ClientError):
        await running
    second = await start(spawn, slack, db_url, **env)
    [edit] = await wait_until(lambda: _calls(slack, "chat.update", "its replica stopped"), message="the card swept")
    ts = next(t for t, m in slack.messages.items() if "sleepy" in m["text"])
    assert edit["ts"] == ts and "did not finish" in slack.messages[ts]["text"]
    assert await second.stop() == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 0
