"""Migrations: an empty database gets the schema the code expects; twice or at once is harmless."""

from __future__ import annotations

import asyncio

import asyncpg

from bot.db import Queries, connect, migrate, migrations

EXPECTED_COLUMNS = {
    "foo": {"id", "col_timestamp"},
    "foojob_job_state": {"job", "paused", "paused_by", "paused_at", "pause_reason", "resume_at", "updated_at",
                         "cron", "timezone", "schedule_source", "schedule_set_by", "schedule_set_at",
                         "configured_cron", "configured_timezone", "schedule_version", "skip_next", "first_seen_at"},
    "foojob_runs": {"id", "job", "trigger", "scheduled_for", "started_at", "finished_at", "status", "result",
                    "error", "triggered_by", "attempt", "retried"},
    "foojob_retries": {"job", "scheduled_for", "attempt", "due_at"},
    "foojob_control_events": {"id", "job", "action", "actor", "reason", "resume_at", "at", "detail"},
    "foojob_schema_migrations": {"version", "name", "applied_at"},
    "foojob_request_keys": {"key", "at"},
    "foojob_outbox": {"id", "payload", "created_at", "attempts", "next_attempt_at", "delivered_at", "failed_at",
                      "last_error", "channel", "method", "card", "ts", "job", "kind"},
    "foojob_outbox_pace": {"destination", "tokens", "updated_at"},
    "foojob_replicas": {"name", "started_at", "last_seen", "stopped_at", "backend_pid"},
    "foojob_missed": {"job", "scheduled_for", "reason", "reported_at", "fires"},
}


async def _columns(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = 'public'")
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    return found


async def test_migrating_an_empty_database_gives_the_expected_schema(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        applied = await migrate(conn, Queries())
        assert applied == [m.version for m in migrations()]
        assert await _columns(conn) == EXPECTED_COLUMNS
        # Every named query is valid SQL against that schema (PREPARE checks names and types).
        for name, sql in Queries().items():
            if not name.startswith("migrations_"):
                await conn.prepare(sql)
    finally:
        await conn.close()


async def test_migrating_twice_applies_nothing_the_second_time(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        await migrate(conn, Queries())
        await conn.execute("INSERT INTO foo VALUES (1, now())")
        assert await migrate(conn, Queries()) == []
        assert await conn.fetchval("SELECT count(*) FROM foo") == 1
        assert await conn.fetchval("SELECT count(*) FROM foojob_schema_migrations") == len(migrations())
    finally:
        await conn.close()


async def test_replicas_migrating_at_once_take_turns(empty_db_url: str) -> None:
    conns = [await connect(empty_db_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(c, Queries()) for c in conns))
        # Exactly one of them applied each migration; the others found it done.
        assert sorted(v for applied in results for v in applied) == [m.version for m in migrations()]
        assert await _columns(conns[0]) == EXPECTED_COLUMNS
    finally:
        for c in conns:
            await c.close()


async def test_a_database_the_go_service_used_is_taken_over_with_its_row(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        await conn.execute("CREATE TABLE foo(id INTEGER NOT NULL PRIMARY KEY, "
                           "col_timestamp TIMESTAMP WITH TIME ZONE NOT NULL)")
        await conn.execute("INSERT INTO foo VALUES (1, '2023-07-01T00:01:00Z')")
        await migrate(conn, Queries())
        assert await conn.fetchval("SELECT count(*) FROM foo") == 1
    finally:
        await conn.close()
