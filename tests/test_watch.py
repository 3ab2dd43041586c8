"""The bot watches its job: timeouts, notification policies and streaks, missed fires, outages told
once, heartbeat pings, auto-resume through an outage — real processes, the real PostgreSQL, a local
webhook sink."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.config import Secret
from bot.control import Control
from bot.db import Queries, create_pool
from bot.runner import Policy, Runner
from tests.conftest import (
    RUN_LOCK,
    Service,
    Spawner,
    WebhookSink,
    catalogue,
    get_json,
    row_locked,
    wait_until,
    with_database,
)
from tests.test_control import TZ, delivering

NEVER_SOON = "0 0 1 1 *"
EVERY_SECOND = "* * * * * *"
MENTION = "<!subteam^S0ONCALL>"


@contextlib.asynccontextmanager
async def broken(db: asyncpg.Connection) -> AsyncIterator[None]:
    """The job fails while inside: its UPSERT violates a constraint."""
    # NOT VALID: the row already there stays; the next UPSERT of it is refused.
    await db.execute("ALTER TABLE foo ADD CONSTRAINT too_late CHECK (col_timestamp < '2000-01-01') NOT VALID")
    try:
        yield
    finally:
        await db.execute("ALTER TABLE foo DROP CONSTRAINT too_late")


@contextlib.asynccontextmanager
async def database_down(db_url: str, db: asyncpg.Connection) -> AsyncIterator[None]:
    """The database refuses connections, and every connection but the test's own is cut."""
    name = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(with_database(db_url, "postgres"))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2",
                            name, db.get_server_pid())
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


# -- timeout ------------------------------------------------------------------------------------

async def test_a_run_past_the_timeout_is_stopped_rolled_back_and_recorded(spawn: Spawner, db_url: str,
                                                                          db: asyncpg.Connection,
                                                                          http: aiohttp.ClientSession,
                                                                          webhook: WebhookSink) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_TIMEOUT="1s",
                               SLACK_WEBHOOK_URL=webhook.url).started()
    async with row_locked(db_url) as holder:  # the UPSERT waits on this lock, for ever
        started = time.monotonic()
        status, body = await get_json(http, "POST", f"{svc.url}/runNow")
        took = time.monotonic() - started
        assert status == 500 and body["error"] == "timed out after 1s"
        # Stopped: the statement was cancelled and the job's lock released, with the row lock still held.
        assert await holder.fetchval(f"SELECT count(*) FROM ({RUN_LOCK}) AS held") == 0
        assert await holder.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'") == 0
    print(f"\nrun-now with a row lock held, FOOJOB_TIMEOUT=1s: answered in {took:.2f} s")
    assert took < 5
    run = await db.fetchrow("SELECT * FROM foojob_runs")
    assert run["status"] == "failed" and run["error"] == "timed out after 1s" and run["result"] is None
    # The next run, with nothing in its way, succeeds; the timeout was a failure like any other.
    assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await wait_until(lambda: len(webhook.received) >= 2, message="both results")
    assert "timed out after 1s" in webhook.texts()[0] and "recovered after 1 failure" in webhook.texts()[1]
    async with http.get(f"{svc.url}/metrics") as resp:
        metrics = await resp.text()
    assert 'foojob_run_timeouts_total{job="foo"} 1.0' in metrics
    assert 'foojob_consecutive_failures{job="foo"} 0.0' in metrics
    assert re.search(r'foojob_last_success_timestamp_seconds\{job="foo"\} 1\.\d+e\+09', metrics)


# -- notification policy and streaks ------------------------------------------------------------

EXPECTED = {
    # success, fail, fail, fail, fail, success with FOOJOB_ALERT_AFTER=3
    "all": ["succeeded", "failed", "failed (2nd failure in a row)", "ALERT 3", "failed (4th failure in a row)",
            "recovered after 4 failures"],
    "failures": ["failed", "failed (2nd failure in a row)", "ALERT 3", "failed (4th failure in a row)",
                 "recovered after 4 failures"],
    "changes": ["failed", "ALERT 3", "recovered after 4 failures"],
}


async def _outbox_drained(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM foojob_outbox WHERE delivered_at IS NULL") == 0)


def _kind(text: str) -> str:
    if text.startswith(MENTION):
        times = re.search(r"failed (\d+) times in a row", text)
        return f"ALERT {times.group(1) if times else '?'}"
    for kind in ("recovered after 4 failures", "recovered after 3 failures", "(2nd failure in a row)",
                 "(4th failure in a row)"):
        if kind in text:
            return kind if kind.startswith("recovered") else f"failed {kind}"
    return "failed" if " failed in " in text else "succeeded"


@pytest.mark.parametrize("policy", ["all", "failures", "changes"])
async def test_each_notification_policy_says_what_it_promises(policy: str, db_url: str, db: asyncpg.Connection,
                                                              webhook: WebhookSink) -> None:
    pool = await create_pool(db_url)
    try:
        async with delivering(pool, webhook.url) as notifier:
            runner = Runner(pool, Queries(), catalogue(NEVER_SOON, notify=policy, tz=TZ), notifier, TZ,
                            policy=Policy(alert_after=3, alert_mention=MENTION))
            control = Control(pool, Queries(), runner, catalogue(NEVER_SOON, tz=TZ), TZ, notifier)
            assert (await control.run_now("foo", by="cli")).status == "succeeded"
            async with broken(db):
                for _ in range(4):
                    assert (await control.run_now("foo", by="cli")).status == "failed"
            assert (await control.run_now("foo", by="cli")).status == "succeeded"
            expected = EXPECTED[policy]
            # Everything the runs queued has been delivered (marked after Slack's answer, so wait).
            await wait_until(lambda: _outbox_drained(db), message="the outbox drained")
    finally:
        await pool.close()
    assert [_kind(t) for t in webhook.texts()] == expected
    alert = next(m for m in webhook.received if m["text"].startswith(MENTION))
    assert [e["text"]["text"] for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "Run again", "Pause 1h"]
    assert re.search(r"recovered after 4 failures over \d+ ms", webhook.texts()[-1])


async def test_the_streak_is_counted_across_replicas(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                    http: aiohttp.ClientSession, webhook: WebhookSink) -> None:
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON, "SLACK_WEBHOOK_URL": webhook.url,
           "FOOJOB_NOTIFY": "changes", "FOOJOB_ALERT_AFTER": "3", "FOOJOB_ALERT_MENTION": MENTION}
    a, b = await spawn(**env).started(), await spawn(**env).started()
    async with broken(db):
        for replica in (a, b, a):  # three failures in a row, on two processes
            assert (await get_json(http, "POST", f"{replica.url}/runNow"))[0] == 500
    assert (await get_json(http, "POST", f"{b.url}/runNow"))[0] == 200
    await wait_until(lambda: len(webhook.received) >= 3, message="first failure, alert, recovery")
    assert [_kind(t) for t in webhook.texts()] == ["failed", "ALERT 3", "recovered after 3 failures"]
    for svc in (a, b):
        assert await svc.stop() == 0
    assert len(webhook.received) == 3


# -- missed fires -------------------------------------------------------------------------------

async def test_a_fire_missed_while_up_is_reported_once_with_its_reason(spawn: Spawner, db_url: str,
                                                                      db: asyncpg.Connection,
                                                                      webhook: WebhookSink) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, FOOJOB_LATE_AFTER="1s",
                      SLACK_WEBHOOK_URL=webhook.url, FOOJOB_NOTIFY="failures").started()
    async with row_locked(db_url):  # one run hangs on the row: the fires meanwhile pile up
        await svc.wait_log(r"coalesced into the one", timeout=10)
    await svc.wait_log(r"missed 1 fire\(s\)", timeout=10)
    reported = await db.fetch("SELECT scheduled_for, reason FROM foojob_missed ORDER BY 1")
    assert reported and all(r["reason"] == "a run was still in progress" for r in reported)
    for row in reported:  # missed means: no run for that instant
        assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for = $1", row["scheduled_for"]) == 0
    await wait_until(lambda: sum("missed its fire" in t for t in webhook.texts()) >= len(reported),
                     message="the missed fires on the webhook")
    texts = [t for t in webhook.texts() if "missed its fire" in t]
    assert len(texts) == len(reported) and all("a run was still in progress" in t for t in texts)
    assert all(not re.search(r"\d\.\d{3,}", t) for t in texts)  # times for people: no fractions
    assert await svc.stop() == 0


async def test_a_gap_with_no_replica_up_is_one_message_at_start_up(spawn: Spawner, db_url: str,
                                                                  db: asyncpg.Connection,
                                                                  webhook: WebhookSink) -> None:
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": EVERY_SECOND, "SLACK_WEBHOOK_URL": webhook.url,
           "FOOJOB_NOTIFY": "failures"}
    first = await spawn(**env).started()
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs"), message="a run")
    assert await first.stop() == 0
    stopped = await db.fetchval("SELECT max(stopped_at) FROM foojob_replicas")
    await wait_until(lambda: datetime.now(UTC) > stopped + timedelta(seconds=3), message="three fires to pass")
    second = await spawn(**env).started()
    await wait_until(lambda: any("no replica was up" in t for t in webhook.texts()), message="the gap reported")
    [gap] = [t for t in webhook.texts() if "no replica was up" in t]
    count = int(re.search(r": (\d+) fires? missed", gap).group(1))  # type: ignore[union-attr]
    print(f"\n{gap}")
    assert count >= 3 and "caught up the latest" in gap
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'catch-up'") == 1
    assert await db.fetchval("SELECT fires FROM foojob_missed WHERE reason = 'no replica was up'") == count
    assert await second.stop() == 0


# -- outages ------------------------------------------------------------------------------------

async def test_a_database_outage_is_told_once_and_its_end_once(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                               webhook: WebhookSink) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, SLACK_WEBHOOK_URL=webhook.url,
                      FOOJOB_NOTIFY="failures").started()
    async with database_down(db_url, db):
        await svc.wait_log(r"could not be recorded", count=4, timeout=15)  # four fires failed
    await wait_until(lambda: any("database is back" in t for t in webhook.texts()), timeout=20,
                     message="the end of the outage told")
    texts = webhook.texts()
    assert sum("database is unreachable" in t for t in texts) == 1
    [back] = [t for t in texts if "database is back" in t]
    missed = int(re.search(r"foo: (\d+) fires? missed", back).group(1))  # type: ignore[union-attr]
    assert missed >= 4
    assert texts.index(next(t for t in texts if "unreachable" in t)) < texts.index(back)
    # Each fire it counts is on record, once (the chaos run accounts for an outage's fires by these).
    assert await db.fetchval("SELECT count(*) FROM foojob_missed WHERE job = 'foo' AND reason = 'outage'") == missed
    assert await svc.stop() == 0


async def test_an_outage_is_reported_when_the_replica_that_told_it_has_died(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, webhook: WebhookSink) -> None:
    # The replica that speaks for all during an outage dies just before the database goes away:
    # the survivor, back, still reports every fire missed meanwhile — once.
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": EVERY_SECOND, "SLACK_WEBHOOK_URL": webhook.url,
           "FOOJOB_NOTIFY": "failures"}
    replicas = [await spawn(**env).started(), await spawn(**env).started()]
    await wait_until(lambda: db.fetchval("SELECT count(*) = 2 FROM foojob_replicas WHERE stopped_at IS NULL"),
                     message="two replicas on record")
    speaker_pid = int((await db.fetchval("SELECT min(name) FROM foojob_replicas WHERE stopped_at IS NULL"))
                      .split(":")[1])
    [speaker] = [r for r in replicas if r.proc.pid == speaker_pid]
    [survivor] = [r for r in replicas if r is not speaker]
    speaker.proc.kill()
    speaker.proc.wait()
    async with database_down(db_url, db):
        await survivor.wait_log(r"could not be recorded", count=3, timeout=15)
    await wait_until(lambda: any("database is back" in t for t in webhook.texts()), timeout=25,
                     message="the end of the outage told by the survivor")
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE started_at > now() - "
                                         "interval '1 second'"), message="runs again")
    [back] = [t for t in webhook.texts() if "database is back" in t]
    missed = int(re.search(r"foo: (\d+) fires? missed", back).group(1))  # type: ignore[union-attr]
    assert missed >= 3
    assert await db.fetchval("SELECT count(*) FROM foojob_missed WHERE job = 'foo' AND reason = 'outage'") == missed
    assert await survivor.stop() == 0


async def test_no_outage_message_while_paused(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                              http: aiohttp.ClientSession, webhook: WebhookSink) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, SLACK_WEBHOOK_URL=webhook.url).started()
    assert (await get_json(http, "POST", f"{svc.url}/pause"))[0] == 200
    await wait_until(lambda: any("paused" in t for t in webhook.texts()), message="the pause announced")
    async with database_down(db_url, db):
        await svc.wait_log(r"could not be recorded", count=3, timeout=15)
    await wait_until(lambda: _healthy(http, svc.url), timeout=20, message="the service to recover")
    assert await svc.stop() == 0
    assert [t for t in webhook.texts() if "unreachable" in t or "database is back" in t] == []


async def _healthy(http: aiohttp.ClientSession, url: str) -> bool:
    return (await get_json(http, "GET", f"{url}/healthz"))[0] == 200


async def test_a_timed_pause_that_ends_during_an_outage_is_recorded_once_it_is_back(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, http: aiohttp.ClientSession,
        webhook: WebhookSink) -> None:
    a = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    b = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    assert (await get_json(http, "POST", f"{a.url}/pause", json={"for": "3s"}))[0] == 200
    async with database_down(db_url, db):
        await a.wait_log(r"timed pause of foo ran out, but it cannot be recorded yet", timeout=10)
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_control_events WHERE action = 'auto-resume'"),
                     timeout=40, message="the automatic resume recorded")
    await wait_until(lambda: any("resumed automatically" in t for t in webhook.texts()), message="announced")
    for svc in (a, b):
        assert await svc.stop() == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_control_events WHERE action = 'auto-resume'") == 1
    assert sum("resumed automatically" in t for t in webhook.texts()) == 1


# -- heartbeat pings ----------------------------------------------------------------------------

@dataclass
class PingSink:
    url: str = ""
    pings: list[tuple[str, str]] = field(default_factory=list)  # (path suffix, rid)


async def test_heartbeat_pings_follow_the_scheduled_runs(spawn: Spawner, db_url: str, db: asyncpg.Connection) -> None:
    sink = PingSink()

    async def ping(request: web.Request) -> web.Response:
        sink.pings.append((request.match_info["tail"], request.query.get("rid", "")))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/ping/check-uuid{tail:.*}", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sink.url = f"http://127.0.0.1:{runner.addresses[0][1]}/ping/check-uuid"
    try:
        svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, FOOJOB_HEARTBEAT_URL=sink.url).started()
        await wait_until(lambda: len(sink.pings) >= 6, message="three runs pinged")
        async with broken(db):
            await wait_until(lambda: any(p[0] == "/fail" for p in sink.pings), message="a failure pinged")
        assert await svc.stop() == 0
    finally:
        await runner.cleanup()
    # Every run: /start then its outcome, with the same run id; never an outcome without its start.
    open_runs: dict[str, str] = {}
    for tail, rid in sink.pings:
        assert rid
        if tail == "/start":
            open_runs[rid] = tail
        else:
            assert tail in ("", "/fail") and open_runs.pop(rid) == "/start"
    runs = await db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'schedule'")
    assert sum(1 for t, _ in sink.pings if t != "/start") == runs
    assert "check-uuid" not in svc.stderr()  # the ping URL is a secret


async def test_metrics_count_missed_fires(spawn: Spawner, db_url: str, http: aiohttp.ClientSession,
                                          webhook: WebhookSink) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, FOOJOB_LATE_AFTER="1s",
                      SLACK_WEBHOOK_URL=webhook.url).started()
    async with row_locked(db_url):
        await svc.wait_log(r"coalesced into the one", timeout=10)
    await svc.wait_log(r"missed 1 fire\(s\)", timeout=10)
    async with http.get(f"{svc.url}/metrics") as resp:
        text = await resp.text()
    value = float(re.search(r'foojob_missed_fires_total\{job="foo"\} (\S+)', text).group(1))  # type: ignore[union-attr]
    assert value >= 1
    assert await svc.stop() == 0


_ = Secret  # keep the import for readers: the ping URL is a Secret in the settings


async def test_the_service_prunes_what_is_older_than_keep_runs_at_start_up(spawn: Spawner, db_url: str,
                                                                           db: asyncpg.Connection) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    for i, status in enumerate(("failed", "succeeded", "succeeded")):
        await db.execute("INSERT INTO foojob_runs (job, trigger, started_at, finished_at, status) "
                         "VALUES ('foo', 'manual', $1, $1, $2)", old + timedelta(seconds=i), status)
    await db.execute("INSERT INTO foojob_outbox (payload, created_at, delivered_at) VALUES ('{}', $1, $1)", old)
    await db.execute("INSERT INTO foojob_outbox (payload, created_at) VALUES ('{\"text\": \"waiting\"}', $1)", old)
    await db.execute("INSERT INTO foojob_control_events (job, action, at) VALUES ('foo', 'pause', $1)", old)
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_KEEP_RUNS="1h").started()
    await svc.wait_log(r"pruned 2 runs, 1 messages, 1 audit events older than 1h")
    assert await svc.stop() == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1  # the newest stays
    assert await db.fetchval("SELECT payload->>'text' FROM foojob_outbox") == "waiting"  # never delivered: kept
