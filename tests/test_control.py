"""The control core against the real PostgreSQL: runs, overlap, failures, pause and resume."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp import web

from bot.config import Secret
from bot.control import Control
from bot.db import Queries, create_pool
from bot.errors import AlreadyRunning, BadInput, DatabaseUnavailable, UnknownJob
from bot.model import Job, JobContext
from bot.notify import OutboxNotifier
from bot.outbox import Dispatcher
from bot.runner import Runner
from bot.watch import Watcher
from tests.conftest import WebhookSink, catalogue, row_locked, wait_until

TZ = ZoneInfo("Europe/Paris")


@dataclass
class Core:
    pool: asyncpg.Pool
    runner: Runner
    control: Control
    notifier: OutboxNotifier


@contextlib.asynccontextmanager
async def delivering(pool: asyncpg.Pool, url: str) -> AsyncIterator[OutboxNotifier]:
    """The outbox and its dispatcher, as the service has them (polling often: no LISTEN here)."""
    notifier = OutboxNotifier(Secret(url))
    dispatcher = Dispatcher(pool, Queries(), Secret(url), idle_poll_s=0.1)
    dispatcher.start()
    try:
        yield notifier
    finally:
        await dispatcher.stop(5)
        await notifier.aclose(5)


@pytest.fixture
async def core(db_url: str, webhook: WebhookSink) -> AsyncIterator[Core]:
    pool = await create_pool(db_url)
    async with delivering(pool, webhook.url) as notifier:
        queries = Queries()
        runner = Runner(pool, queries, catalogue(tz=TZ), notifier, TZ)
        control = Control(pool, queries, runner, catalogue("*/3 * * * * *", tz=TZ), TZ, notifier)
        yield Core(pool, runner, control, notifier)
    await pool.close()


async def test_run_now_upserts_the_row_and_records_the_run(core: Core, db: asyncpg.Connection,
                                                           webhook: WebhookSink) -> None:
    run = await core.control.run_now("foo", by="U0123ABC")
    assert run.status == "succeeded" and run.trigger == "manual" and run.triggered_by == "U0123ABC"
    row = await db.fetchrow("SELECT * FROM foo WHERE id = 1")
    assert run.result == {"id": 1, "colTimestamp": row["col_timestamp"].astimezone(TZ).isoformat()}
    assert run.scheduled_for is None and run.finished_at is not None and run.finished_at >= run.started_at
    stored = await db.fetchrow("SELECT * FROM foojob_runs WHERE id = $1", run.id)
    assert stored["status"] == "succeeded" and stored["result"] == run.result
    await wait_until(lambda: webhook.received, message="the result on the webhook")
    assert '"colTimestamp"' in webhook.received[0]["text"] and webhook.received[0]["blocks"]


async def test_two_run_nows_at_once_exactly_one_runs(core: Core, db_url: str, db: asyncpg.Connection) -> None:
    async with row_locked(db_url):
        first = asyncio.create_task(core.control.run_now("foo", by="http"))
        # The first run holds the job's lock and waits on the row we hold.
        await wait_until(lambda: _running(core), message="the first run to be in progress")
        with pytest.raises(AlreadyRunning):
            await core.control.run_now("foo", by="http")
    run = await first
    assert run.status == "succeeded"
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1
    assert not (await core.control.status("foo")).running


async def _running(core: Core) -> bool:
    return (await core.control.status("foo")).running


async def test_a_failing_job_is_recorded_failed_and_reported(core: Core, db: asyncpg.Connection,
                                                             webhook: WebhookSink) -> None:
    # A real fault: the job's UPSERT now violates a constraint.
    await db.execute("ALTER TABLE foo ADD CONSTRAINT too_late CHECK (col_timestamp < '2000-01-01')")
    run = await core.control.run_now("foo", by="cli")
    assert run.status == "failed" and run.result is None
    assert run.error is not None and "too_late" in run.error
    assert await db.fetchval("SELECT count(*) FROM foo") == 0  # the job's work was rolled back
    assert await db.fetchval("SELECT status FROM foojob_runs WHERE id = $1", run.id) == "failed"
    await wait_until(lambda: webhook.received, message="the failure on the webhook")
    message = webhook.received[0]
    assert "failed" in message["text"] and "too_late" in message["text"]
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Run again", "Pause 1h"]
    # And the next run, once the fault is gone, succeeds.
    await db.execute("ALTER TABLE foo DROP CONSTRAINT too_late")
    assert (await core.control.run_now("foo", by="cli")).status == "succeeded"


async def test_a_fire_is_claimed_once(core: Core, db: asyncpg.Connection) -> None:
    at = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    first = await core.runner.run("foo", trigger="schedule", scheduled_for=at)
    again = await core.runner.run("foo", trigger="schedule", scheduled_for=at)
    assert first is not None and first.scheduled_for == at
    assert again is None
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1


async def test_a_fire_runs_before_the_job_has_a_row_and_runs_once(
        core: Core, db: asyncpg.Connection) -> None:
    # No foojob_job_state row yet (nothing reconciled): not paused, nothing skipped, any version.
    assert await db.fetchval("SELECT count(*) FROM foojob_job_state") == 0
    at = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    first = await core.runner.run("foo", trigger="schedule", scheduled_for=at, schedule_version=3)
    assert first is not None and first.status == "succeeded"
    # The same fire again (a standby taking over a fire its owner ran meanwhile): nothing run.
    assert await core.runner.run("foo", trigger="schedule", scheduled_for=at, schedule_version=3) is None
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1


async def test_pause_persists_holds_fires_and_resume_undoes_it(core: Core, db: asyncpg.Connection,
                                                               webhook: WebhookSink) -> None:
    state = await core.control.pause("foo", by="U0123ABC", reason="deploy")
    assert state.paused and state.paused_by == "U0123ABC" and state.pause_reason == "deploy"
    assert state.resume_at is None
    status = await core.control.status("foo")
    assert status.state.paused and status.next_run_at is None
    # A fire while paused does nothing; run-now still runs.
    assert await core.runner.run("foo", trigger="schedule", scheduled_for=datetime.now(UTC)) is None
    assert (await core.control.run_now("foo", by="http")).status == "succeeded"
    # Pausing again is harmless and keeps the original time.
    again = await core.control.pause("foo", by="http", reason="still deploying")
    assert again.paused_at == state.paused_at and again.pause_reason == "still deploying"

    assert await core.control.resume("foo", by="U0123ABC") is True
    assert await core.control.resume("foo", by="U0123ABC") is False  # idempotent
    status = await core.control.status("foo")
    assert not status.state.paused and status.next_run_at is not None
    assert status.next_run_at > datetime.now(UTC)
    events = await db.fetch("SELECT action, actor FROM foojob_control_events ORDER BY id")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("pause", "U0123ABC"), ("pause", "http"), ("resume", "U0123ABC")]
    await wait_until(lambda: len(webhook.received) >= 4, message="announcements and the run")
    texts = webhook.texts()
    assert any("paused by <@U0123ABC>" in t and "deploy" in t for t in texts)
    assert any("resumed by <@U0123ABC>" in t for t in texts)


async def test_a_timed_pause_ends_by_itself_once(core: Core, db: asyncpg.Connection) -> None:
    state = await core.control.pause("foo", by="http", duration=timedelta(hours=2))
    assert state.resume_at is not None
    assert timedelta(hours=1, minutes=59) < state.resume_at - datetime.now(UTC) <= timedelta(hours=2)
    assert await core.control.expire_pause("foo") is False  # not yet
    # Time passes (moved in the database: the pause ran out a second ago).
    await db.execute("UPDATE foojob_job_state SET resume_at = now() - interval '1 second'")
    # Reads as not paused at once, before any timer ran, so a fire would run.
    assert not (await core.control.state("foo")).paused
    assert await core.runner.run("foo", trigger="schedule", scheduled_for=datetime.now(UTC)) is not None
    results = await asyncio.gather(*(core.control.expire_pause("foo") for _ in range(3)))
    assert sorted(results) == [False, False, True]  # announced once
    assert await db.fetchval("SELECT count(*) FROM foojob_control_events WHERE action = 'auto-resume'") == 1


async def test_bad_requests_change_nothing(core: Core, db: asyncpg.Connection) -> None:
    with pytest.raises(UnknownJob):
        await core.control.pause("bar", by="http")
    with pytest.raises(BadInput):
        await core.control.history("foo", 0)
    with pytest.raises(BadInput):
        await core.control.pause("foo", by="http", reason="x" * 501)
    assert await db.fetchval("SELECT count(*) FROM foojob_job_state") == 0


async def test_history_is_newest_first_and_limited(core: Core) -> None:
    ids = [(await core.control.run_now("foo", by="cli")).id for _ in range(3)]
    history = await core.control.history("foo", 2)
    assert [r.id for r in history] == ids[::-1][:2]


async def test_database_gone_is_reported_not_crashed(db_url: str, webhook: WebhookSink) -> None:
    pool = await create_pool(db_url)
    notifier = OutboxNotifier(Secret(webhook.url))
    runner = Runner(pool, Queries(), catalogue(tz=TZ), notifier, TZ)
    control = Control(pool, Queries(), runner, catalogue("* * * * *", tz=TZ), TZ, notifier)
    await pool.close()  # as good as a dead server, from the pool's side
    try:
        with pytest.raises(DatabaseUnavailable):
            await control.status("foo")
        watcher = Watcher(control, notifier, TZ, timedelta(minutes=1))
        runner.watch = watcher
        start = datetime.now(UTC).replace(microsecond=0)
        for second in range(3):  # three fires during the outage: told once, not three times
            with pytest.raises(DatabaseUnavailable):
                await runner.run("foo", trigger="schedule", scheduled_for=start + timedelta(seconds=second))
        await wait_until(lambda: webhook.received, message="the outage report")
        await notifier.aclose(5)
        [told] = webhook.received
        assert "the database is unreachable since" in told["text"] and "One more message when it is" in told["text"]
    finally:
        await notifier.aclose(5)
        await watcher.close()


async def test_no_outage_report_while_the_job_is_known_to_be_paused(db_url: str, webhook: WebhookSink) -> None:
    pool = await create_pool(db_url)
    try:
        async with delivering(pool, webhook.url) as notifier:
            runner = Runner(pool, Queries(), catalogue(tz=TZ), notifier, TZ)
            control = Control(pool, Queries(), runner, catalogue("* * * * *", tz=TZ), TZ, notifier)
            watcher = Watcher(control, notifier, TZ, timedelta(minutes=1))
            runner.watch = watcher
            watcher.state_changed(await control.pause("foo", by="http"))
            await wait_until(lambda: webhook.received, message="the pause announced")
    finally:
        await pool.close()
    try:
        with pytest.raises(DatabaseUnavailable):
            await runner.run("foo", trigger="schedule", scheduled_for=datetime.now(UTC))
        await notifier.aclose(5)  # waits for any direct post
        assert len(webhook.received) == 1 and "paused" in webhook.received[0]["text"]
    finally:
        await watcher.close()


async def _raises_os_error(ctx: JobContext) -> dict[str, Any]:
    await ctx.conn.execute("INSERT INTO foo VALUES (2, now())")  # work that must be rolled back
    raise ConnectionResetError("the upstream API hung up")


async def _raises_timeout(ctx: JobContext) -> dict[str, Any]:
    await ctx.conn.execute("SET LOCAL statement_timeout = '50ms'")
    await ctx.conn.execute("SELECT pg_sleep(1)")
    return {}


async def _returns_no_json(ctx: JobContext) -> dict[str, Any]:
    return {"when": object()}


@pytest.mark.parametrize(("run", "words"), [
    (_raises_os_error, "ConnectionResetError: the upstream API hung up"),
    (_raises_timeout, "QueryCanceledError"),
    (_returns_no_json, "TypeError"),
])
async def test_whatever_a_job_raises_is_recorded_as_its_failure(db_url: str, db: asyncpg.Connection,
                                                               webhook: WebhookSink, run: Any, words: str) -> None:
    jobs = {"odd": Job(name="odd", run=run, cron_variable="ODD_CRON", default_cron="* * * * *")}
    pool = await create_pool(db_url)
    try:
        async with delivering(pool, webhook.url) as notifier:
            runner = Runner(pool, Queries(), catalogue(jobs=jobs, default="odd", tz=TZ), notifier, TZ)
            record = await runner.run("odd", trigger="manual", triggered_by="cli")
            assert record is not None and record.status == "failed" and words in (record.error or "")
            assert await db.fetchval("SELECT status FROM foojob_runs WHERE id = $1", record.id) == "failed"
            assert await db.fetchval("SELECT count(*) FROM foo") == 0
            await wait_until(lambda: webhook.received, message="the failure report")
    finally:
        await pool.close()


async def test_a_slow_webhook_does_not_delay_the_run(db_url: str) -> None:
    release = asyncio.Event()
    got: list[dict[str, Any]] = []

    async def stalled(request: web.Request) -> web.Response:
        got.append(await request.json())
        await release.wait()  # Slack hangs until the test lets go
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", stalled)
    runner_ = web.AppRunner(app)
    await runner_.setup()
    await web.TCPSite(runner_, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner_.addresses[0][1]}/hook"
    pool = await create_pool(db_url)
    try:
        async with delivering(pool, url) as notifier:
            control = Control(pool, Queries(), Runner(pool, Queries(), catalogue(tz=TZ), notifier, TZ),
                              catalogue("* * * * *", tz=TZ), TZ, notifier)
            first = await control.run_now("foo", by="cli")
            await wait_until(lambda: got, message="the webhook to be called")
            # The webhook is still hanging on the first message: runs go on regardless.
            second = await control.run_now("foo", by="cli")
            assert first.status == second.status == "succeeded" and not release.is_set()
            release.set()
            await wait_until(lambda: len(got) == 2, message="the second message, in order, once Slack answers")
            assert f"run #{first.id}" in got[0]["text"] and f"run #{second.id}" in got[1]["text"]
    finally:
        release.set()
        await pool.close()
        await runner_.cleanup()


async def test_a_failing_webhook_is_retried_and_its_url_never_logged(core: Core, webhook: WebhookSink,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    webhook.script = [500, 503]
    with caplog.at_level(logging.DEBUG):
        run = await core.control.run_now("foo", by="cli")
        await wait_until(lambda: webhook.received, timeout=15, message="delivery after two failures")
    assert f"run #{run.id}" in webhook.received[0]["text"]
    assert "delivery of message" in caplog.text and "failed (HTTP 500" in caplog.text
    assert "secretpart" not in caplog.text and webhook.url not in caplog.text
