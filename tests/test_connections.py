"""A server's connection limit is not an outage: with a role allowed fewer connections than the
replicas' pools would open, many jobs due at once all run, once, and nobody is told the database
is unreachable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.conftest import Spawner, WebhookSink, wait_until
from tests.test_replicas import start_all

JOBS = 30
EVERY_3S = "*/3 * * * * *"


def _as(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


async def test_a_connection_limit_is_waited_for_not_an_outage(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                             webhook: WebhookSink, tmp_path: Path) -> None:
    role = f"foojob_small_{uuid.uuid4().hex[:8]}"
    # 2 replicas × (a pool of 10 + LISTEN) would open 22; the role may open 7.
    await db.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 7')
    try:
        await db.execute(f'GRANT ALL ON SCHEMA public TO "{role}"; '
                         f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"; '
                         f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        folder = tmp_path / "jobs"
        folder.mkdir()
        for n in range(JOBS):  # each holds its connection a moment: the burst needs many at once
            (folder / f"job{n:02d}.sql").write_text(f"-- cron: {EVERY_3S}\n-- notify: failures\n"
                                                    "SELECT pg_sleep(0.05) IS NOT NULL AS slept;\n")
        replicas = await start_all(spawn, 2, DATABASE_URL=_as(db_url, role), FOOJOB_CRON="0 0 1 1 *",
                                   FOOJOB_JOBS_DIR=str(folder), SLACK_WEBHOOK_URL=webhook.url)
        first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

        async def three_bursts() -> list[datetime]:
            rows = await db.fetch("SELECT scheduled_for FROM foojob_runs WHERE scheduled_for > $1 "
                                  "GROUP BY 1 HAVING count(*) = $2 ORDER BY 1", first, JOBS)
            return [r["scheduled_for"] for r in rows] if len(rows) >= 3 else []

        bursts = await wait_until(three_bursts, timeout=40, message="three bursts of every job")
        for replica in replicas:
            assert await replica.stop() == 0
        doubled = await db.fetchval("SELECT count(*) FROM (SELECT 1 FROM foojob_runs WHERE scheduled_for IS NOT NULL "
                                    "GROUP BY job, scheduled_for HAVING count(*) > 1) AS d")
        assert doubled == 0 and len(bursts) >= 3
        assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE status <> 'succeeded'") == 0
        logs = "".join(r.stderr() for r in replicas)
        assert "refuses more connections" in logs  # the limit was met…
        assert "unreachable" not in logs and not [t for t in webhook.texts() if "unreachable" in t]  # …not an outage
        assert logs.count("refuses more connections") <= 2 * 2  # a line a minute per replica, at most
    finally:
        await db.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        await db.execute(f'DROP OWNED BY "{role}"; DROP ROLE IF EXISTS "{role}"')
