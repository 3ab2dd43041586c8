"""The service as a user runs it: the schedule, restarts, failures, shutdown, the CLI, the
embedded database."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

from tests.conftest import (
    Service,
    WebhookSink,
    get_json,
    row_locked,
    run_cli,
    run_in_progress,
    wait_until,
    with_database,
)

EVERY_SECOND = "* * * * * *"
NEVER_SOON = "0 0 1 1 *"


async def _schedule_runs(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM foojob_runs WHERE trigger = 'schedule' ORDER BY scheduled_for")


async def test_the_schedule_fires_on_time_and_results_go_to_stdout(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                                   db: asyncpg.Connection) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    runs = await wait_until(lambda: _at_least(db, 3), timeout=10, message="three scheduled runs")
    instants = [r["scheduled_for"] for r in runs]
    assert all(t.microsecond == 0 for t in instants)
    assert all(b - a == timedelta(seconds=1) for a, b in zip(instants, instants[1:], strict=False))
    assert all(r["status"] == "succeeded" and r["triggered_by"] is None for r in runs)
    assert all(timedelta(0) <= r["started_at"] - r["scheduled_for"] < timedelta(seconds=1) for r in runs)
    await wait_until(lambda: svc.stdout().count("foo succeeded") >= 3, message="results on stdout")
    assert '"colTimestamp"' in svc.stdout()


async def _at_least(db: asyncpg.Connection, n: int) -> list[asyncpg.Record] | None:
    runs = await _schedule_runs(db)
    return runs if len(runs) >= n else None


async def test_pause_survives_a_restart(spawn, db_url: str, db: asyncpg.Connection,  # type: ignore[no-untyped-def]
                                        http: aiohttp.ClientSession) -> None:
    first: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    await wait_until(lambda: _at_least(db, 1), message="a scheduled run")
    assert (await get_json(http, "POST", f"{first.url}/pause", json={"reason": "maintenance"}))[0] == 200
    assert await first.stop() == 0

    second: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    assert await get_json(http, "GET", f"{second.url}/isRunning") == (200, {"message": "false"})
    _, st = await get_json(http, "GET", f"{second.url}/status")
    assert st["paused"] and st["pauseReason"] == "maintenance" and st["nextRunAt"] is None
    before = len(await _schedule_runs(db))
    # Three fires come and go, each skipped because of the pause read from the database.
    await second.wait_log(r"skipped: paused", count=3, timeout=10)
    assert len(await _schedule_runs(db)) == before

    assert (await get_json(http, "POST", f"{second.url}/resume"))[0] == 200
    await wait_until(lambda: _at_least(db, before + 1), message="runs again after resume")


async def test_a_failing_job_is_reported_and_the_service_lives_on(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                                  db: asyncpg.Connection, webhook: WebhookSink,
                                                                  http: aiohttp.ClientSession) -> None:
    await db.execute("ALTER TABLE foo ADD CONSTRAINT too_late CHECK (col_timestamp < '2000-01-01')")
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND,
                               SLACK_WEBHOOK_URL=webhook.url).started()
    failed = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_runs WHERE status = 'failed'"),
                              message="a failed run")
    assert "too_late" in failed["error"] and failed["result"] is None
    await wait_until(lambda: any("failed" in t for t in webhook.texts()), message="the failure on the webhook")
    status, body = await get_json(http, "POST", f"{svc.url}/runNow")
    assert status == 500 and "too_late" in body["error"]
    assert (await get_json(http, "GET", f"{svc.url}/healthz"))[0] == 200

    await db.execute("ALTER TABLE foo DROP CONSTRAINT too_late")
    await wait_until(lambda: db.fetchrow("SELECT 1 FROM foojob_runs WHERE status = 'succeeded'"),
                     message="a run succeeding once the fault is gone")
    assert svc.proc.poll() is None


async def test_sigterm_lets_the_run_in_progress_finish(spawn, db_url: str, db: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    await wait_until(lambda: _at_least(db, 1), message="a first run")
    async with row_locked(db_url):
        before = len(await _schedule_runs(db))
        # The next fire takes the job's lock and then waits on our row lock: a run in progress.
        await run_in_progress(db_url)
        svc.proc.send_signal(signal.SIGTERM)
        await svc.wait_log("shutting down")
        # Still there, its run still waiting on our lock (not cancelled, not rolled back).
        assert await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                                 "AND wait_event_type = 'Lock' AND datname = current_database()",
                                 f"foojob:{svc.proc.pid}") == 1
        assert svc.proc.poll() is None
    assert await svc.wait_exit() == 0
    runs = await _schedule_runs(db)
    # The run that was in progress completed and was recorded; no fire ran after the SIGTERM.
    assert len(runs) == before + 1 and runs[-1]["status"] == "succeeded"
    assert "stopped" in svc.stderr()


async def test_sigint_stops_cleanly_too(spawn, db_url: str) -> None:  # type: ignore[no-untyped-def]
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    assert await svc.stop(signal.SIGINT) == 0
    assert "stopped" in svc.stderr()


async def test_the_cli_acts_on_the_database(db_url: str, db: asyncpg.Connection) -> None:
    env = {"DATABASE_URL": db_url}
    result = run_cli("pause", "2h", "deploy", "of", "v2", **env)
    assert result.returncode == 0, result.stderr
    assert "foo paused until" in result.stdout and "(deploy of v2)" in result.stdout
    state = await db.fetchrow("SELECT * FROM foojob_job_state WHERE job = 'foo'")
    assert state["paused"] and state["paused_by"] == "cli" and state["pause_reason"] == "deploy of v2"

    status = json.loads(run_cli("status", "--json", **env).stdout)
    assert status["paused"] and status["pausedBy"] == "cli" and status["nextRunAt"] is None

    ran = run_cli("run-now", "--json", **env)
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["trigger"] == "manual" and run["triggeredBy"] == "cli" and run["status"] == "succeeded"

    history = run_cli("history", "-n", "5", **env)
    assert history.returncode == 0 and f"#{run['id']}" in history.stdout

    assert run_cli("resume", **env).stdout.strip() == "foo resumed"
    assert run_cli("resume", **env).stdout.strip() == "foo was not paused"
    text = run_cli("status", **env).stdout
    assert "foo: active" in text and "schedule: 1 0 * * * — at 00:01 every day (UTC; configured (FOOJOB_CRON))" in text

    for word in ("2x", "1.5h", "90min", "1h-"):  # meant as a duration: never a pause with no end, reason "1.5h"
        bad = run_cli("pause", word, **env)
        assert bad.returncode == 2 and "not a duration (try 30m, 2h, 1d or 1h30m)" in bad.stderr, (word, bad.stderr)
    assert not (await db.fetchrow("SELECT paused FROM foojob_job_state"))["paused"]


async def test_cli_run_now_says_already_running(db_url: str) -> None:
    async with row_locked(db_url):
        import asyncio

        blocked = asyncio.create_task(asyncio.to_thread(run_cli, "run-now", DATABASE_URL=db_url))
        await run_in_progress(db_url, "the first run-now to hold the job")
        second = await asyncio.to_thread(run_cli, "run-now", DATABASE_URL=db_url)
        assert second.returncode == 3 and "already running" in second.stderr
    assert (await blocked).returncode == 0


async def test_embedded_database_zero_setup_and_restart(spawn, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        http: aiohttp.ClientSession) -> None:
    data = tmp_path / "data"
    svc: Service = await spawn(FOOJOB_DATA_DIR=str(data), FOOJOB_CRON=NEVER_SOON).started(timeout=60)
    status, row = await get_json(http, "POST", f"{svc.url}/runNow")
    assert status == 200 and row["id"] == 1
    assert (await get_json(http, "POST", f"{svc.url}/pause"))[0] == 200
    assert await svc.stop() == 0
    assert (data / "PG_VERSION").exists()

    again: Service = await spawn(FOOJOB_DATA_DIR=str(data), FOOJOB_CRON=NEVER_SOON).started(timeout=60)
    assert await get_json(http, "GET", f"{again.url}/isRunning") == (200, {"message": "false"})
    _, body = await get_json(http, "GET", f"{again.url}/runs")
    assert [r["result"] for r in body["runs"]] == [row]
    assert datetime.fromisoformat(row["colTimestamp"]).tzinfo is not None
    assert await again.stop() == 0


async def test_the_database_going_away_gives_503_and_everything_recovers(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                                        db: asyncpg.Connection,
                                                                        http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    name = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(with_database(db_url, "postgres"))
    try:
        # The database refuses connections and every connection the service had is cut.
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND application_name = $2", name, f"foojob:{svc.proc.pid}")
        status, health = await get_json(http, "GET", f"{svc.url}/healthz")
        assert status == 503 and health["database"] == "unreachable" and health["status"] == "unhealthy"
        status, body = await get_json(http, "POST", f"{svc.url}/runNow")
        assert status == 503 and "database unavailable" in body["error"]
        assert svc.proc.poll() is None
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    await wait_until(lambda: _healthy(http, svc.url), message="healthz to recover")
    status, row = await get_json(http, "POST", f"{svc.url}/runNow")
    assert status == 200 and row["id"] == 1


async def _healthy(http: aiohttp.ClientSession, url: str) -> bool:
    return (await get_json(http, "GET", f"{url}/healthz"))[0] == 200


async def test_json_logs_one_event_a_line_with_fields(spawn, db_url: str, db: asyncpg.Connection,  # type: ignore[no-untyped-def]
                                                     http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, LOG_FORMAT="json",
                               LOG_LEVEL="INFO").started()
    await wait_until(lambda: _at_least(db, 2), message="scheduled runs")
    assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await svc.wait_log(r'"trigger": "manual"')
    assert await svc.stop() == 0
    lines = [json.loads(line) for line in svc.stderr().splitlines()]  # every line is one JSON object
    runs = [entry for entry in lines if "run_id" in entry]
    scheduled = next(e for e in runs if e["trigger"] == "schedule")
    assert {"time", "level", "logger", "message", "replica", "job", "run_id", "trigger", "scheduled_for",
            "duration_ms", "status"} <= set(scheduled)
    assert scheduled["job"] == "foo" and scheduled["status"] == "succeeded"
    assert scheduled["replica"].endswith(f":{svc.proc.pid}")
    manual = next(e for e in runs if e["trigger"] == "manual")
    assert "scheduled_for" not in manual and isinstance(manual["duration_ms"], float)


async def test_metrics_count_runs_and_fire_lag(spawn, db_url: str, db: asyncpg.Connection,  # type: ignore[no-untyped-def]
                                              http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    await wait_until(lambda: _at_least(db, 2), message="scheduled runs")
    async with http.get(f"{svc.url}/metrics") as resp:
        text = await resp.text()
    counted = float(re.search(r'foojob_runs_total\{job="foo",status="succeeded",trigger="schedule"\} (\S+)',
                              text).group(1))  # type: ignore[union-attr]
    lags = float(re.search(r'foojob_fire_lag_seconds_count\{job="foo"\} (\S+)', text).group(1))  # type: ignore[union-attr]
    assert counted >= 2 and lags == counted
    assert "foojob_outbox_depth 0.0" in text and 'foojob_paused{job="foo"} 0.0' in text
    assert "foojob_slack_socket_connected 0.0" in text  # Slack is off here


async def test_a_reading_verb_never_sets_up_the_database(empty_db_url: str) -> None:
    import asyncpg

    for verb in (["status"], ["history"], ["jobs"], ["schedule"], ["next"]):
        result = run_cli(*verb, DATABASE_URL=empty_db_url)
        assert result.returncode == 1, (verb, result.stderr)
        assert "is not set up for foojob: run `foojob migrate`" in result.stderr and result.stderr.count("\n") == 1
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await conn.close()
    assert "applied" in run_cli("migrate", DATABASE_URL=empty_db_url).stdout  # so migrate has something to do


def test_the_cli_gives_up_on_a_silent_database_after_5_s() -> None:
    import socket
    import time

    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    began = time.monotonic()
    result = run_cli("status", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/nothing")
    took = time.monotonic() - began
    assert result.returncode == 1 and took < 15, took
    assert result.stderr.count("\n") == 1 and f"127.0.0.1:{port}/nothing did not answer within 5 s" in result.stderr


async def test_next_and_skip_name_the_same_instant_in_the_schedules_zone(db_url: str) -> None:
    env = {"DATABASE_URL": db_url}  # FOOJOB_TIMEZONE unset: UTC; the schedule is read in Tokyo
    assert run_cli("schedule", "set", "0 9 * * *", "--timezone", "Asia/Tokyo", **env).returncode == 0
    first = run_cli("next", "1", **env).stdout.strip()
    skipped = run_cli("skip", **env).stdout.strip()
    assert first.endswith("JST") and skipped == f"foo: the fire of {first} will be skipped", (first, skipped)
    assert run_cli("unskip", **env).stdout.strip() == f"foo: the fire of {first} will run after all"


async def test_a_change_made_elsewhere_shows_as_one_made_here(spawn, db_url: str) -> None:  # type: ignore[no-untyped-def]
    # No webhook: the service prints its announcements. A pause, a skip or a schedule change made
    # from the CLI is printed by the running service too, and its log says what changed.
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    env = {"DATABASE_URL": db_url}
    assert run_cli("pause", "2h", "maintenance", **env).returncode == 0
    await wait_until(lambda: "foo paused by cli until" in svc.stdout(), message="the pause printed by the service")
    assert "maintenance" in svc.stdout()
    assert run_cli("skip", **env).returncode == 3  # while paused: refused, nothing to tell
    assert run_cli("resume", **env).returncode == 0
    assert run_cli("schedule", "set", "0 6 * * *", **env).returncode == 0
    assert run_cli("skip", **env).returncode == 0
    await wait_until(lambda: "will be skipped (by cli)" in svc.stdout(), message="the skip printed")
    out = svc.stdout()
    assert "foo resumed by cli" in out and "foo's schedule was changed by cli" in out
    log = svc.stderr()
    assert "heard through NOTIFY" in log and "is now active" not in log  # a skip never reads as a resume
    assert await svc.stop() == 0
