"""Guarantees under replicas and faults, with real processes on the real PostgreSQL.

Each test prints what it observed (run with ``-s`` to see the figures).
"""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg

from tests.conftest import (
    RUN_LOCK,
    Service,
    Spawner,
    WebhookSink,
    get_json,
    row_locked,
    run_cli,
    run_in_progress,
    wait_until,
)

EVERY_SECOND = "* * * * * *"
NEVER_SOON = "0 0 1 1 *"


async def start_all(spawn: Spawner, n: int, **env: str) -> list[Service]:
    services = [spawn(**env) for _ in range(n)]
    return [await s.started() for s in services]


async def schedule_instants(db: asyncpg.Connection) -> list[datetime]:
    rows = await db.fetch("SELECT scheduled_for FROM foojob_runs WHERE trigger = 'schedule' ORDER BY 1")
    return [r["scheduled_for"] for r in rows]


async def test_three_replicas_run_every_second_exactly_once(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                            webhook: WebhookSink) -> None:
    replicas = await start_all(spawn, 3, DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND,
                               SLACK_WEBHOOK_URL=webhook.url)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    last = first + timedelta(seconds=19)
    await wait_until(lambda: _has_instant(db, last), timeout=30, message="20 seconds of fires")
    instants = [t for t in await schedule_instants(db) if first <= t <= last]
    expected = [first + timedelta(seconds=i) for i in range(20)]
    missing = sorted(set(expected) - set(instants))
    duplicates = len(instants) - len(set(instants))
    print(f"\n3 replicas, 20 s: {len(instants)} runs for 20 fires, {duplicates} duplicates, {len(missing)} missed")
    assert duplicates == 0 and not missing, f"missing fires: {missing}"
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE status <> 'succeeded'") == 0
    for replica in replicas:
        assert await replica.stop() == 0
    await assert_never_overlapping(db)
    # Every run's message reached Slack exactly once, in the order of the runs.
    run_ids = [r["id"] for r in await db.fetch("SELECT id FROM foojob_runs ORDER BY id")]
    await wait_until(lambda: len(webhook.received) >= len(run_ids), timeout=30, message="all messages")
    assert webhook.run_ids() == run_ids


async def assert_never_overlapping(db: asyncpg.Connection) -> None:
    """No two runs of the job were ever in progress at once, whatever replica ran them."""
    rows = await db.fetch("SELECT id, started_at, finished_at FROM foojob_runs ORDER BY started_at")
    for before, after in zip(rows, rows[1:], strict=False):
        assert before["finished_at"] <= after["started_at"], f"runs {before['id']} and {after['id']} overlap"


async def _has_instant(db: asyncpg.Connection, instant: datetime) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for >= $1", instant))


async def test_pause_on_one_replica_holds_for_all_within_a_second(spawn: Spawner, db_url: str,
                                                                  db: asyncpg.Connection,
                                                                  http: aiohttp.ClientSession) -> None:
    a, b, c = await start_all(spawn, 3, DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND)
    await wait_until(lambda: schedule_instants(db), message="runs")
    assert (await get_json(http, "POST", f"{a.url}/pause", json={"reason": "incident"}))[0] == 200
    paused_at = await db.fetchval("SELECT now()")
    # The NOTIFY reaches the other replicas, each within a second.
    await asyncio.gather(*(r.wait_log(r"foo paused by http.*heard through NOTIFY", timeout=1.0) for r in (b, c)))
    # The fires' owner finds them paused; the replicas standing by take none of them over.
    await wait_until(lambda: sum(len(re.findall(r"skipped: paused", r.stderr())) for r in (a, b, c)) >= 2,
                     timeout=5, message="two fires skipped, paused")
    await asyncio.sleep(3)  # past the standbys' grace (2.5 s) for those fires
    assert not any("taken over" in r.stderr() for r in (a, b, c))
    late = await db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'schedule' AND started_at > $1",
                             paused_at + timedelta(seconds=1))
    print(f"\nruns started more than 1 s after the pause, on any of 3 replicas: {late}")
    assert late == 0
    for replica in (a, b, c):
        assert await get_json(http, "GET", f"{replica.url}/isRunning") == (200, {"message": "false"})
    assert (await get_json(http, "POST", f"{c.url}/resume"))[0] == 200
    resumed_at = await db.fetchval("SELECT now()")
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE started_at > $1", resumed_at),
                     message="runs again after the resume")


async def test_kill_9_mid_run_leaves_no_half_row_and_no_duplicate(spawn: Spawner, db_url: str,
                                                                  db: asyncpg.Connection) -> None:
    a, b = await start_all(spawn, 2, DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND)
    await wait_until(lambda: schedule_instants(db), message="runs")
    by_pid = {a.proc.pid: a, b.proc.pid: b}
    async with row_locked(db_url):
        # A run is in progress: it holds the job's lock and waits on our lock on foo's row.
        holder = await wait_until(lambda: _run_holder(db), message="a run in progress")
        victim = by_pid[int(holder.split(":")[1])]
        victim.proc.send_signal(signal.SIGKILL)
        killed_at = await db.fetchval("SELECT now()")
        survivor = b if victim is a else a
        # The other replica's fire was waiting for the same job: it takes over.
        await wait_until(lambda: _holder_is(db, f"foojob:{survivor.proc.pid}"),
                         message="the survivor to take over the run")
        released_at = await db.fetchval("SELECT now()")
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE started_at > $1", released_at),
                     message="runs after the lock is released")
    rows = await db.fetch("SELECT * FROM foojob_runs ORDER BY id")
    instants = [r["scheduled_for"] for r in rows if r["scheduled_for"] is not None]
    assert len(instants) == len(set(instants))  # no fire twice
    assert all(r["status"] == "succeeded" for r in rows)  # no half row, nothing left "running"
    taken_over = [r for r in rows if killed_at <= r["started_at"] < released_at]
    assert len(taken_over) == 1  # the fire the killed replica was running ran once, on the survivor
    assert taken_over[0]["scheduled_for"] <= killed_at  # a fire due before the kill: the victim's
    # foo holds what the last committed run wrote, not what the killed one half did.
    last = rows[-1]["result"]
    stored = await db.fetchval("SELECT col_timestamp FROM foo WHERE id = 1")
    assert datetime.fromisoformat(last["colTimestamp"]) == stored
    print(f"\nkill -9 mid-run: {len(rows)} runs, 0 duplicates, taken over by the other replica: run "
          f"{taken_over[0]['id']}")


async def _run_holder(db: asyncpg.Connection) -> str | None:
    """The application_name (``foojob:<pid>``) of the process running the job, if any."""
    return await db.fetchval(f"SELECT application_name FROM pg_stat_activity WHERE pid = ({RUN_LOCK} LIMIT 1)")


async def _holder_is(db: asyncpg.Connection, name: str) -> bool:
    return await _run_holder(db) == name


async def test_cut_connections_come_back_by_themselves(spawn: Spawner, db_url: str, db: asyncpg.Connection) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    await svc.wait_log("listening for changes from other replicas")
    await wait_until(lambda: schedule_instants(db), message="runs")
    cut = await db.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = $1", f"foojob:{svc.proc.pid}")
    cut_at = await db.fetchval("SELECT now()")
    assert cut >= 2  # the pool's connection(s) and the listening one
    await svc.wait_log("listening for changes from other replicas again", timeout=10)
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE started_at > $1", cut_at),
                     timeout=10, message="runs after the connections were cut")
    # A pause from another process reaches it through the new LISTEN connection.
    assert run_cli("pause", "deploy", DATABASE_URL=db_url).returncode == 0
    await svc.wait_log("foo paused by cli.*heard through NOTIFY", timeout=2)
    assert svc.proc.poll() is None


async def test_fires_during_a_long_run_wait_then_run_once_never_overlapping(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, http: aiohttp.ClientSession) -> None:
    a, b = await start_all(spawn, 2, DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND)
    await wait_until(lambda: schedule_instants(db), message="runs")
    async with row_locked(db_url):
        # A long run-now on replica a: the scheduled fires must wait for it. Their owner keeps them,
        # then coalesces them; the standby sees them held up by a run in progress and takes none over.
        manual = asyncio.create_task(get_json(http, "POST", f"{a.url}/runNow"))
        await wait_until(lambda: _run_holder(db), message="the run-now in progress")
        await wait_until(lambda: sum(svc.stderr().count("coalesced into the one for") for svc in (a, b)) >= 3,
                         timeout=10, message="fires kept, then coalesced")
        assert not any("taken over" in svc.stderr() for svc in (a, b))
        released_at = await db.fetchval("SELECT now()")
    assert (await manual)[0] == 200
    # The fire kept last runs as soon as the long run ends: once, on one replica.
    after = await wait_until(lambda: db.fetch(
        "SELECT * FROM foojob_runs WHERE trigger = 'schedule' AND started_at >= $1 ORDER BY started_at",
        released_at), message="the kept fire to run")
    assert after[0]["started_at"] - released_at < timedelta(seconds=1)
    assert after[0]["scheduled_for"] < released_at  # it is a fire from during the long run
    await assert_never_overlapping(db)
    coalesced = {line.split(" for ")[1].split(" coalesced")[0] for svc in (a, b)
                 for line in svc.stderr().splitlines() if "coalesced into" in line}
    ran = {r["scheduled_for"].isoformat()
           for r in await db.fetch("SELECT scheduled_for FROM foojob_runs WHERE scheduled_for IS NOT NULL")}
    assert coalesced and not (coalesced & ran)  # a coalesced fire never ran as well


# -- Slack delivery ---------------------------------------------------------------------------------

async def test_slacks_pace_holds_across_replicas(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                 webhook: WebhookSink, http: aiohttp.ClientSession) -> None:
    a, b = await start_all(spawn, 2, DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url)
    for i in range(8):  # a burst of runs, on both replicas
        assert (await get_json(http, "POST", f"{(a, b)[i % 2].url}/runNow"))[0] == 200
    await wait_until(lambda: len(webhook.received) == 8, timeout=20, message="eight messages")
    times = [x.at for x in webhook.attempts]
    # One message a second with bursts of three: k+1 consecutive deliveries span at least k-2 s.
    for i, start in enumerate(times):
        for j in range(i + 3, len(times)):
            assert times[j] - start >= (j - i - 2) - 0.05, f"deliveries {i}..{j} came too fast"
    assert times[-1] - times[0] >= 8 - 3 - 0.05
    assert webhook.run_ids() == [r["id"] for r in await db.fetch("SELECT id FROM foojob_runs ORDER BY id")]

async def _outbox(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM foojob_outbox ORDER BY id")


async def test_5xx_is_retried_until_slack_takes_it(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                   webhook: WebhookSink, http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    webhook.script = [500, 500]
    status, _ = await get_json(http, "POST", f"{svc.url}/runNow")
    assert status == 200  # the run does not wait for Slack
    await wait_until(lambda: webhook.received, timeout=15, message="delivery after two 500s")
    [row] = await _outbox(db)
    assert row["delivered_at"] is not None and row["attempts"] == 3
    assert [a.status for a in webhook.attempts] == [500, 500, 200] and len(webhook.received) == 1
    first, second, third = (a.at for a in webhook.attempts)
    # Backoff with jitter: the n-th retry waits between half and all of min(15 s, 0.5 s × 2^n).
    assert second - first >= 0.25 and third - second >= 0.5
    assert webhook.url not in svc.stderr() and "secretpart" not in svc.stderr()


async def test_429_waits_for_retry_after(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                         webhook: WebhookSink, http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    webhook.script = [(429, 2)]
    assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await wait_until(lambda: webhook.received, timeout=10, message="delivery after the rate limit")
    limited, delivered = webhook.attempts
    print(f"\n429 Retry-After: 2 → next attempt {delivered.at - limited.at:.2f} s later")
    assert limited.status == 429 and delivered.status == 200
    assert delivered.at - limited.at >= 2.0  # not a moment before Slack said
    assert "rate limited by Slack" in svc.stderr()


async def test_a_stalled_webhook_delays_neither_runs_nor_order(spawn: Spawner, db_url: str,
                                                               db: asyncpg.Connection, webhook: WebhookSink,
                                                               http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    webhook.script = [("stall", 10)]
    ids = []
    for _ in range(3):
        status, _ = await get_json(http, "POST", f"{svc.url}/runNow")
        assert status == 200
        ids.append(await db.fetchval("SELECT max(id) FROM foojob_runs"))
    assert len(webhook.attempts) <= 1  # all three runs done while Slack still hangs on the first message
    await wait_until(lambda: len(set(webhook.run_ids())) == 3, timeout=30, message="all three messages")
    seen = list(dict.fromkeys(webhook.run_ids()))  # the stalled one may arrive twice (at least once)
    assert seen == ids


async def test_a_permanent_error_sets_the_message_aside_and_the_queue_moves_on(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, webhook: WebhookSink,
        http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    webhook.script = [410]
    for _ in range(2):
        assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await wait_until(lambda: webhook.received, timeout=10, message="the second message")
    refused, delivered = await _outbox(db)
    assert refused["failed_at"] is not None and "410 channel_is_archived" in refused["last_error"]
    assert refused["attempts"] == 1  # never retried
    assert delivered["delivered_at"] is not None
    assert "Slack refused message" in svc.stderr() and "channel_is_archived" in svc.stderr()


async def test_a_long_webhook_outage_loses_nothing_and_keeps_order(spawn: Spawner, db_url: str,
                                                                   db: asyncpg.Connection, webhook: WebhookSink,
                                                                   http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    webhook.down = True
    for _ in range(4):
        assert (await get_json(http, "POST", f"{svc.url}/runNow"))[0] == 200
    await wait_until(lambda: len(webhook.attempts) >= 4, timeout=20, message="several failed attempts")
    webhook.down = False
    ids = [r["id"] for r in await db.fetch("SELECT id FROM foojob_runs ORDER BY id")]
    await wait_until(lambda: len(webhook.received) == 4, timeout=30, message="every message after the outage")
    assert webhook.run_ids() == ids
    # (Slack's 200 comes before the mark is committed: wait for the mark, not only the POST.)
    await wait_until(lambda: _all_delivered(db), message="every message marked delivered")


async def _all_delivered(db: asyncpg.Connection) -> bool:
    return all(r["delivered_at"] is not None for r in await _outbox(db))


async def test_sigterm_leaves_undelivered_messages_to_the_next_process(spawn: Spawner, db_url: str,
                                                                       db: asyncpg.Connection,
                                                                       webhook: WebhookSink,
                                                                       http: aiohttp.ClientSession) -> None:
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON, "SLACK_WEBHOOK_URL": webhook.url}
    first = await spawn(**env).started()
    webhook.down = True
    assert (await get_json(http, "POST", f"{first.url}/runNow"))[0] == 200
    await wait_until(lambda: webhook.attempts, message="a failed attempt")
    assert await first.stop() == 0
    [pending] = await _outbox(db)
    assert pending["delivered_at"] is None and pending["failed_at"] is None
    webhook.down = False
    await spawn(**env).started()
    await wait_until(lambda: webhook.received, timeout=20, message="the next process to deliver it")
    assert (await _outbox(db))[0]["delivered_at"] is not None


async def test_a_message_left_behind_is_delivered_by_a_replica_that_did_not_write_it(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, webhook: WebhookSink) -> None:
    # The dispatchers do not poll: a process wakes its own when it writes a message. A message whose
    # writer died before delivering it is found by the heartbeat (every 10 s) of any replica.
    await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    await db.execute("INSERT INTO foojob_outbox (payload) VALUES ($1::text::jsonb)", '{"text": "left behind"}')
    await wait_until(lambda: webhook.received, timeout=25, message="the heartbeat to find the message")
    assert webhook.texts() == ["left behind"]
    assert (await _outbox(db))[0]["delivered_at"] is not None


async def _connections(db: asyncpg.Connection, pid: int) -> int:
    return int(await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                 f"foojob:{pid}"))


async def test_a_replica_firing_every_second_holds_two_connections(spawn: Spawner, db_url: str,
                                                                   db: asyncpg.Connection) -> None:
    # One pooled connection for the runs and the LISTEN one (which also carries the heartbeat);
    # what start-up borrowed more is given back after 10 s idle.
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    pid = svc.proc.pid

    async def settled() -> bool:
        return await _connections(db, pid) <= 2

    await wait_until(settled, timeout=25, message="start-up's extra connections to be closed")
    runs = await db.fetchval("SELECT count(*) FROM foojob_runs")
    counts = []
    for _ in range(15):  # three seconds: three fires
        counts.append(await _connections(db, pid))
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") >= runs + 2
    print(f"connections of the replica, every 0.2 s over 3 s of fires: {counts}")
    assert max(counts) <= 2


async def test_a_frozen_replica_does_not_stop_the_fires(spawn: Spawner, db_url: str, db: asyncpg.Connection) -> None:
    # One owner per fire (bot/scheduler.py: owner): the job's owner runs it alone; the other replica
    # stands by (bot/standby.py). Frozen, the owner stays counted as up until its heartbeat is 15 s
    # old; meanwhile the standby runs each of its fires once, 2.5 s after its instant.
    services = await start_all(spawn, 2, DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND)
    live = "SELECT name, started_at, last_seen FROM foojob_replicas WHERE stopped_at IS NULL"
    # Each has heard of the other (a heartbeat after both registered): both know there are two.

    async def both_know() -> bool:
        rows = await db.fetch(live)
        return len(rows) == 2 and min(r["last_seen"] for r in rows) > max(r["started_at"] for r in rows)

    await wait_until(both_know, timeout=25, message="both to count two replicas")
    # The owner: the one that runs the job now.
    await asyncio.sleep(2)
    last = await db.fetchval("SELECT max(id) FROM foojob_runs WHERE trigger = 'schedule'")
    [frozen] = [s for s in services if f"run {last} of foo (schedule" in s.stderr()]
    [standby] = [s for s in services if s is not frozen]
    await asyncio.sleep(1.5 - datetime.now(UTC).timestamp() % 1)  # mid-second: no run under way
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        since = datetime.now(UTC)

        async def five_fires() -> bool:
            return int(await db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'schedule' "
                                         "AND scheduled_for > $1", since)) >= 5

        await wait_until(five_fires, timeout=15, message="fires while the owner is frozen")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    await asyncio.sleep(4)  # the thawed owner's fires, and any second try of the same ones
    rows = await db.fetch("SELECT scheduled_for, count(*) AS n, max(started_at - scheduled_for) AS lag "
                          "FROM foojob_runs WHERE trigger = 'schedule' AND scheduled_for > $1 "
                          "AND scheduled_for <= $1 + interval '5 seconds' GROUP BY 1", since)
    print(f"while the owner was frozen: {[(r['n'], r['lag'].total_seconds()) for r in rows]}")
    assert len(rows) == 5 and all(r["n"] == 1 for r in rows)
    assert all(r["lag"] < timedelta(seconds=3) for r in rows)
    assert "taken over" in standby.stderr()


# -- catch-up ---------------------------------------------------------------------------------------

def _minutes_ago_cron(minutes: int) -> tuple[str, datetime]:
    """An hourly schedule whose latest fire was ``minutes`` ago (so no process can have run it)."""
    fire = (datetime.now(UTC) - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    return f"{fire.minute} * * * *", fire


async def _catch_ups(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM foojob_runs WHERE trigger = 'catch-up'")


async def test_one_catch_up_run_after_everyone_was_down(spawn: Spawner, db_url: str, db: asyncpg.Connection) -> None:
    cron, fire = _minutes_ago_cron(5)
    # The job has run before: the last scheduled run was an hour and five minutes ago, and every
    # replica was down since, missing a fire every minute... the schedule here is hourly, so one.
    await db.execute("INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, finished_at, status) "
                     "VALUES ('foo', 'schedule', $1, $1, $1, 'succeeded')", fire - timedelta(hours=1))
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron).started()
    [run] = await _catch_ups(db)
    assert run["scheduled_for"] == fire and run["status"] == "succeeded" and run["triggered_by"] is None
    assert "while no replica was up" in svc.stderr()
    assert await svc.stop() == 0
    # Starting again does not run it again: the fire is claimed.
    await spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron).started()
    assert len(await _catch_ups(db)) == 1


async def test_a_crash_and_a_quick_restart_reports_the_gap_and_catches_up(spawn: Spawner, db_url: str,
                                                                         db: asyncpg.Connection) -> None:
    # The killed process's last heartbeat is still fresh when its successor starts (a platform
    # restarts a crash at once): it dates the gap, it does not vouch that there was none.
    first = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs"), message="a first run")
    # As if it had been up for an hour (a replica that started with this one would not count).
    await db.execute("UPDATE foojob_replicas SET started_at = started_at - interval '1 hour' WHERE name LIKE $1",
                     f"%:{first.proc.pid}:%")
    first.proc.send_signal(signal.SIGKILL)
    await wait_until(lambda: first.proc.poll() is not None, message="the process to die")
    killed_at = datetime.now(UTC)
    await asyncio.sleep(2.5)  # a downtime (not a wait for anything): its fires have nobody to run them
    second = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND).started()
    [report] = await db.fetch("SELECT * FROM foojob_missed WHERE reason = 'no replica was up'")
    assert report["fires"] >= 2 and report["scheduled_for"] >= killed_at - timedelta(seconds=1)
    [run] = await _catch_ups(db)
    assert run["scheduled_for"] > killed_at
    assert "no replica was up" in second.stderr()


async def test_never_a_burst_of_catch_ups(spawn: Spawner, db_url: str, db: asyncpg.Connection) -> None:
    # Down for 40 minutes on a schedule of every 5 minutes: 8 missed fires, one catch-up (the latest).
    began = datetime.now(UTC)
    await db.execute("INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, finished_at, status) "
                     "VALUES ('foo', 'schedule', $1, $1, $1, 'succeeded')", began - timedelta(minutes=40))
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON="*/5 * * * *").started()
    [run] = await _catch_ups(db)
    assert began - timedelta(minutes=5) < run["scheduled_for"] <= began
    # Nothing else ran for the missed fires (a fire due after the start is the schedule's, not missed).
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for < $1", began) == 2
    assert svc.proc.poll() is None


async def test_no_catch_up_on_a_first_start_when_paused_or_past_the_grace(spawn: Spawner, db_url: str,
                                                                          db: asyncpg.Connection) -> None:
    cron, fire = _minutes_ago_cron(5)
    first = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron).started()  # never ran: no catch-up
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 0
    assert await first.stop() == 0

    await db.execute("INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, finished_at, status) "
                     "VALUES ('foo', 'schedule', $1, $1, $1, 'succeeded')", fire - timedelta(hours=1))
    assert run_cli("pause", DATABASE_URL=db_url).returncode == 0
    paused = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron).started()
    assert await _catch_ups(db) == []  # paused: nothing was missed, nothing is caught up
    assert await paused.stop() == 0

    assert run_cli("resume", DATABASE_URL=db_url).returncode == 0
    await spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron, FOOJOB_MISFIRE_GRACE="2m").started()
    assert await _catch_ups(db) == []  # 5 minutes late is past a 2-minute grace


async def test_a_fire_another_replica_was_up_for_is_not_caught_up(spawn: Spawner, db_url: str,
                                                                   db: asyncpg.Connection) -> None:
    # Another process was up across the fire (say it skipped it: paused then). Not missed: no catch-up.
    cron, fire = _minutes_ago_cron(5)
    await db.execute("INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, finished_at, status) "
                     "VALUES ('foo', 'schedule', $1, $1, $1, 'succeeded')", fire - timedelta(hours=1))
    await db.execute("INSERT INTO foojob_replicas (name, started_at, last_seen) VALUES ('other:1:ab', $1, $2)",
                     fire - timedelta(minutes=10), fire + timedelta(seconds=1))
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron).started()
    assert await _catch_ups(db) == []
    # The process registers itself while it runs, and records when it stopped (where a gap begins).
    mine = "SELECT stopped_at FROM foojob_replicas WHERE name LIKE $1"
    assert await db.fetchval(f"SELECT count(*) FROM ({mine}) AS m WHERE stopped_at IS NULL",
                             f"%:{svc.proc.pid}:%") == 1
    assert await svc.stop() == 0
    assert await db.fetchval(mine, f"%:{svc.proc.pid}:%") is not None


async def test_a_late_heartbeat_never_undoes_a_goodbye_and_only_older_replicas_date_a_gap(
        db: asyncpg.Connection) -> None:
    from bot.db import Queries

    q = Queries()
    await db.execute("INSERT INTO foojob_replicas (name, started_at, last_seen, stopped_at) "
                     "VALUES ('gone:1:ab', now() - interval '1 hour', now() - interval '5 minutes', "
                     "now() - interval '5 minutes')")
    stopped = await db.fetchval("SELECT stopped_at FROM foojob_replicas WHERE name = 'gone:1:ab'")
    await db.fetchrow(q["replica_heartbeat"], "gone:1:ab", 15.0)  # a beat that lost the race with goodbye
    assert await db.fetchval("SELECT stopped_at FROM foojob_replicas WHERE name = 'gone:1:ab'") == stopped
    # The gap begins where the last process stopped...
    assert await db.fetchval(q["last_sign_of_life"], "me:2:cd", "foo", 15.0) == stopped
    # A process starting now, as this one does, was not up during the gap: no witness.
    await db.fetchrow(q["replica_heartbeat"], "new:3:ef", 15.0)
    assert await db.fetchval(q["last_sign_of_life"], "me:2:cd", "foo", 15.0) == stopped
    # One that has been up a while: the gap begins at its last heartbeat (it may have crashed since).
    await db.execute("INSERT INTO foojob_replicas (name, started_at, last_seen) "
                     "VALUES ('up:4:gh', now() - interval '1 hour', now() - interval '3 seconds')")
    beat = await db.fetchval("SELECT last_seen FROM foojob_replicas WHERE name = 'up:4:gh'")
    assert await db.fetchval(q["last_sign_of_life"], "me:2:cd", "foo", 15.0) == beat


async def test_replicas_starting_together_catch_up_once(spawn: Spawner, db_url: str, db: asyncpg.Connection) -> None:
    cron, fire = _minutes_ago_cron(3)
    await db.execute("INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, finished_at, status) "
                     "VALUES ('foo', 'schedule', $1, $1, $1, 'succeeded')", fire - timedelta(hours=1))
    services = [spawn(DATABASE_URL=db_url, FOOJOB_CRON=cron) for _ in range(3)]
    await asyncio.gather(*(s.started() for s in services))
    assert len(await _catch_ups(db)) == 1
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE status <> 'succeeded'") == 0


async def test_a_rolling_restart_reports_no_gap(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                webhook: WebhookSink) -> None:
    # Another replica is up the whole time: the fire just due when one restarts is the live
    # replica's (it may be running it right now), not a gap. (Seen 1-3 times in 25 restarts; here
    # the live replica's run is held up, so that its fire is under way while the other restarts.)
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": EVERY_SECOND, "SLACK_WEBHOOK_URL": webhook.url,
           "FOOJOB_NOTIFY": "failures"}
    steady = await spawn(**env).started()
    restarting = await spawn(**env).started()
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs"), message="a first run")
    assert await restarting.stop() == 0
    async with row_locked(db_url):  # every run of foo waits: the live replica's fire stays under way
        await run_in_progress(db_url)
        restarting = await spawn(**env).started()
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE started_at > now() - interval '1 s'"),
                     timeout=15, message="runs again")
    assert await restarting.stop() == 0 and await steady.stop() == 0
    assert not any("no replica was up" in t for t in webhook.texts()), webhook.texts()
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'catch-up'") == 0
    assert not await db.fetchval("SELECT count(*) FROM foojob_missed WHERE reason = 'no replica was up'")
