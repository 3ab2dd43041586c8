"""Retention against the real PostgreSQL: what goes, what always stays, batches, one pruner at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest

from bot.db import Queries, create_pool
from bot.retention import Pruned, Pruner, prune
from tests.conftest import wait_until

KEEP = timedelta(days=1)
OLD = timedelta(days=10)
ANCIENT = timedelta(days=1000)
RECENT = timedelta(hours=1)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url)
    yield pool
    await pool.close()


async def add_run(db: asyncpg.Connection, job: str, age: timedelta, status: str = "succeeded") -> int:
    run_id: int = await db.fetchval(
        "INSERT INTO foojob_runs (job, trigger, started_at, finished_at, status)"
        " VALUES ($1, 'manual', now() - $2::interval, now() - $2::interval, $3) RETURNING id", job, age, status)
    return run_id


async def add_message(db: asyncpg.Connection, age: timedelta, state: str) -> int:
    """state: 'delivered', 'failed' (set aside for good), 'pending', or 'retrying' (pending, tried)."""
    message_id: int = await db.fetchval(
        "INSERT INTO foojob_outbox (payload, created_at, attempts, delivered_at, failed_at, last_error)"
        " VALUES ($1, now() - $2::interval, $3,"
        "         CASE WHEN $4 = 'delivered' THEN now() - $2::interval END,"
        "         CASE WHEN $4 = 'failed' THEN now() - $2::interval END,"
        "         CASE WHEN $4 IN ('failed', 'retrying') THEN 'HTTP 500' END)"
        " RETURNING id",
        {"text": state}, age, 0 if state == "pending" else 3, state)
    return message_id


async def add_event(db: asyncpg.Connection, job: str, age: timedelta) -> int:
    event_id: int = await db.fetchval(
        "INSERT INTO foojob_control_events (job, action, actor, at)"
        " VALUES ($1, 'pause', 'U0123ABC', now() - $2::interval) RETURNING id", job, age)
    return event_id


async def ids(db: asyncpg.Connection, table: str) -> list[int]:
    return [row["id"] for row in await db.fetch(f"SELECT id FROM {table} ORDER BY id")]


async def old_rows(db: asyncpg.Connection) -> int:
    """Rows retention should have deleted by now (with KEEP), counted as the tests lay them out."""
    count: int = await db.fetchval(
        "SELECT (SELECT count(*) FROM foojob_runs r WHERE started_at < now() - interval '1 day'"
        "          AND EXISTS (SELECT 1 FROM foojob_runs n WHERE n.job = r.job AND n.id > r.id"
        "                      AND n.status = 'succeeded'))"
        "     + (SELECT count(*) FROM foojob_outbox WHERE created_at < now() - interval '1 day'"
        "          AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL))"
        "     + (SELECT count(*) FROM foojob_control_events WHERE at < now() - interval '1 day')")
    return count


async def none_left(db: asyncpg.Connection) -> bool:
    return await old_rows(db) == 0


async def test_what_is_old_goes_and_the_rest_stays(pool: asyncpg.Pool, db: asyncpg.Connection,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    foo_old = [await add_run(db, "foo", OLD), await add_run(db, "foo", OLD)]
    bar_old = await add_run(db, "bar", OLD)
    foo_new = await add_run(db, "foo", RECENT)
    bar_new = await add_run(db, "bar", RECENT)
    delivered_old = await add_message(db, OLD, "delivered")
    failed_old = await add_message(db, OLD, "failed")
    pending_old = await add_message(db, OLD, "pending")
    delivered_new = await add_message(db, RECENT, "delivered")
    failed_new = await add_message(db, RECENT, "failed")
    events_old = [await add_event(db, "foo", OLD), await add_event(db, "bar", OLD)]
    event_new = await add_event(db, "foo", RECENT)

    with caplog.at_level(logging.INFO, logger="bot.retention"):
        pruned = await prune(pool, Queries(), KEEP)

    assert pruned == Pruned(runs=3, messages=2, events=2)
    assert await ids(db, "foojob_runs") == [foo_new, bar_new]
    assert await ids(db, "foojob_outbox") == [pending_old, delivered_new, failed_new]
    assert await ids(db, "foojob_control_events") == [event_new]
    assert foo_old and bar_old and delivered_old and failed_old and events_old
    lines = [r for r in caplog.records if r.name == "bot.retention" and r.levelno == logging.INFO]
    assert [r.getMessage() for r in lines] == ["pruned 3 runs, 2 messages, 2 audit events older than 1d"]
    assert lines[0].status == "pruned" and isinstance(lines[0].duration_ms, int)

    # Nothing left to prune: nothing deleted, and no INFO line.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bot.retention"):
        assert await prune(pool, Queries(), KEEP) == Pruned(0, 0, 0)
    assert not [r for r in caplog.records if r.name == "bot.retention" and r.levelno >= logging.INFO]


async def test_the_newest_run_of_each_job_stays_whatever_its_age(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    foo = [await add_run(db, "foo", ANCIENT), await add_run(db, "foo", OLD)]
    bar = [await add_run(db, "bar", ANCIENT), await add_run(db, "bar", ANCIENT), await add_run(db, "bar", OLD)]
    only = await add_run(db, "baz", ANCIENT)

    assert await prune(pool, Queries(), KEEP) == Pruned(runs=3, messages=0, events=0)

    assert await ids(db, "foojob_runs") == sorted([foo[-1], bar[-1], only])
    # As /status reads it: each job still has its last run.
    for job, newest in (("foo", foo[-1]), ("bar", bar[-1]), ("baz", only)):
        assert (await db.fetchrow(Queries()["last_run"], job))["id"] == newest


async def streak(db: asyncpg.Connection, job: str) -> tuple[int | None, int]:
    """The job's last success, and the failures since: what a run reads to word its message."""
    row = await db.fetchrow(
        "SELECT (SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded') AS success,"
        "       (SELECT count(*) FROM foojob_runs WHERE job = $1 AND status = 'failed' AND id >"
        "          coalesce((SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded'), 0)) AS failures",
        job)
    return row["success"], row["failures"]


async def test_the_last_success_and_the_failures_since_stay_whatever_their_age(pool: asyncpg.Pool,
                                                                               db: asyncpg.Connection) -> None:
    gone = [await add_run(db, "foo", ANCIENT, "failed"), await add_run(db, "foo", ANCIENT),
            await add_run(db, "foo", OLD, "failed")]
    foo_kept = [await add_run(db, "foo", OLD), await add_run(db, "foo", OLD, "failed"),
                await add_run(db, "foo", OLD, "failed"), await add_run(db, "foo", OLD, "failed")]
    bar_kept = [await add_run(db, "bar", ANCIENT, "failed"), await add_run(db, "bar", OLD, "failed")]
    assert await streak(db, "foo") == (foo_kept[0], 3) and await streak(db, "bar") == (None, 2)

    assert await prune(pool, Queries(), KEEP) == Pruned(runs=3, messages=0, events=0)

    assert await ids(db, "foojob_runs") == foo_kept + bar_kept
    assert not set(gone) & set(await ids(db, "foojob_runs"))
    assert await streak(db, "foo") == (foo_kept[0], 3) and await streak(db, "bar") == (None, 2)


async def test_a_message_still_to_deliver_is_never_deleted(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    kept = [await add_message(db, ANCIENT, "pending"), await add_message(db, ANCIENT, "retrying"),
            await add_message(db, OLD, "pending")]
    gone = [await add_message(db, ANCIENT, "delivered"), await add_message(db, ANCIENT, "failed")]

    assert await prune(pool, Queries(), timedelta(seconds=1), batch=1) == Pruned(runs=0, messages=2, events=0)

    assert await ids(db, "foojob_outbox") == kept
    assert not set(gone) & set(await ids(db, "foojob_outbox"))


async def test_batches_delete_everything_old_a_few_rows_at_a_time(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    # Every DELETE statement on the three tables records how many rows it removed.
    await db.execute("""
        CREATE TABLE deletes (seq BIGSERIAL, tbl TEXT, n BIGINT);
        CREATE FUNCTION count_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO deletes (tbl, n) SELECT TG_TABLE_NAME, count(*) FROM gone;
            RETURN NULL;
        END $$;
        CREATE TRIGGER runs_deletes AFTER DELETE ON foojob_runs
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deletes();
        CREATE TRIGGER outbox_deletes AFTER DELETE ON foojob_outbox
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deletes();
        CREATE TRIGGER events_deletes AFTER DELETE ON foojob_control_events
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deletes();
    """)
    for _ in range(7):
        await add_run(db, "foo", OLD)
        await add_message(db, OLD, "delivered")
        await add_event(db, "foo", OLD)
    newest_run = await add_run(db, "foo", OLD)
    pending = await add_message(db, OLD, "pending")

    assert await prune(pool, Queries(), KEEP, batch=2) == Pruned(runs=7, messages=7, events=7)

    assert await ids(db, "foojob_runs") == [newest_run]
    assert await ids(db, "foojob_outbox") == [pending]
    assert await ids(db, "foojob_control_events") == []
    statements = await db.fetch("SELECT tbl, n FROM deletes ORDER BY seq")
    for table in ("foojob_runs", "foojob_outbox", "foojob_control_events"):
        assert [r["n"] for r in statements if r["tbl"] == table] == [2, 2, 2, 1], table


async def test_a_prune_waits_its_turn_and_lets_go_of_the_lock(pool: asyncpg.Pool, db: asyncpg.Connection,
                                                             db_url: str) -> None:
    old = await add_event(db, "foo", OLD)
    other = await asyncpg.connect(db_url)  # another replica, pruning right now
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock(7263522, 1)")
        assert await prune(pool, Queries(), KEEP) is None
        assert await ids(db, "foojob_control_events") == [old]
        await other.execute("SELECT pg_advisory_unlock(7263522, 1)")
    finally:
        await other.close()

    assert await prune(pool, Queries(), KEEP) == Pruned(runs=0, messages=0, events=1)
    # The lock did not outlive the prune: another replica can take it at once.
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7263522 AND granted"
    assert await db.fetchval(held) == 0
    assert await db.fetchval("SELECT pg_try_advisory_lock(7263522, 1)")
    await db.execute("SELECT pg_advisory_unlock(7263522, 1)")


async def test_two_prunes_at_once_delete_each_row_once(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO foojob_control_events (job, action, at)"
                     " SELECT 'foo', 'pause', now() - interval '10 days' FROM generate_series(1, 500)")
    await db.execute("INSERT INTO foojob_runs (job, trigger, started_at, status)"
                     " SELECT 'foo', 'manual', now() - interval '10 days', 'succeeded' FROM generate_series(1, 301)")
    await db.execute("INSERT INTO foojob_outbox (payload, created_at, delivered_at)"
                     " SELECT '{}', now() - interval '10 days', now() FROM generate_series(1, 200)")

    results = await asyncio.gather(prune(pool, Queries(), KEEP, batch=7), prune(pool, Queries(), KEEP, batch=7))

    done = [r for r in results if r is not None]
    assert done, results
    assert (sum(r.runs for r in done), sum(r.messages for r in done), sum(r.events for r in done)) == (300, 200, 500)
    assert await old_rows(db) == 0
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1


async def test_the_pruner_prunes_at_start_and_stops(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    await add_run(db, "foo", OLD)
    newest = await add_run(db, "foo", OLD)
    await add_message(db, OLD, "delivered")
    await add_event(db, "foo", OLD)

    pruner = Pruner(pool, Queries(), KEEP)  # hourly: only the start-up prune can happen here
    pruner.start()
    try:
        await wait_until(lambda: none_left(db), message="the start-up prune")
    finally:
        await asyncio.wait_for(pruner.stop(), 5)
    assert await ids(db, "foojob_runs") == [newest]


async def test_the_pruner_prunes_again_every_period(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    await add_event(db, "foo", OLD)
    pruner = Pruner(pool, Queries(), KEEP, every=timedelta(seconds=0.2))
    pruner.start()
    try:
        await wait_until(lambda: none_left(db), message="the start-up prune")
        await add_event(db, "foo", OLD)
        await add_message(db, OLD, "failed")
        await wait_until(lambda: none_left(db), message="a later prune")
    finally:
        await asyncio.wait_for(pruner.stop(), 5)


async def test_stopping_cancels_a_prune_in_progress_and_lets_go_of_the_lock(pool: asyncpg.Pool, db_url: str,
                                                                           db: asyncpg.Connection) -> None:
    old = await add_event(db, "foo", OLD)
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7263522 AND granted"
    waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
               " AND query LIKE '%DELETE FROM foojob_control_events%'")
    pruner = Pruner(pool, Queries(), KEEP)
    locker = await asyncpg.connect(db_url)  # holds the old event's row: the prune's delete waits for it
    try:
        async with locker.transaction():
            await locker.execute("SELECT * FROM foojob_control_events WHERE id = $1 FOR UPDATE", old)
            pruner.start()
            try:
                await wait_until(lambda: db.fetchval(waiting), message="the prune blocked on the locked row")
                assert await db.fetchval(held) == 1
            finally:
                await asyncio.wait_for(pruner.stop(), 5)
            assert await db.fetchval(held) == 0
    finally:
        await locker.close()
    assert await ids(db, "foojob_control_events") == [old]  # its batch rolled back


async def test_the_pruner_survives_the_database_going_away(pool: asyncpg.Pool, db: asyncpg.Connection,
                                                          db_url: str, pg_server: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    name = urlsplit(db_url).path.lstrip("/")
    await add_event(db, "foo", OLD)
    admin = await asyncpg.connect(pg_server)
    try:
        # The database refuses new connections, and the pool's are cut (the test's own stays).
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2",
                            name, db.get_server_pid())
        pruner = Pruner(pool, Queries(), KEEP, every=timedelta(seconds=0.2))
        with caplog.at_level(logging.INFO, logger="bot.retention"):
            pruner.start()
            try:
                def warned() -> list[logging.LogRecord]:
                    return [r for r in caplog.records if r.name == "bot.retention" and r.levelno == logging.WARNING]

                await wait_until(lambda: len(warned()) >= 2, message="two failed turns")
                assert await old_rows(db) == 1
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                await wait_until(lambda: none_left(db), message="a prune once the database is back")
            finally:
                await asyncio.wait_for(pruner.stop(), 5)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    # One plain line a failed turn: no traceback, nothing worse than a warning.
    assert all(r.exc_info is None and "database unavailable" in r.getMessage() for r in warned())
    assert not [r for r in caplog.records if r.name == "bot.retention" and r.levelno > logging.WARNING]


async def test_nonsense_arguments_are_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        await prune(pool, Queries(), timedelta(0))
    with pytest.raises(ValueError):
        await prune(pool, Queries(), KEEP, batch=0)
    with pytest.raises(ValueError):
        Pruner(pool, Queries(), KEEP, every=timedelta(0))
    with pytest.raises(ValueError):
        Pruner(pool, Queries(), timedelta(seconds=-1))
