"""The foo job of the original service: UPSERT row id=1 of ``foo`` with ``col_timestamp = now()``."""

from __future__ import annotations

from typing import Any

from bot.model import Job, JobContext
from bot.timefmt import rfc3339


async def run(ctx: JobContext) -> dict[str, Any]:
    row = await ctx.conn.fetchrow(ctx.queries["upsert_foo"], 1)
    return {"id": row["id"], "colTimestamp": rfc3339(row["col_timestamp"], ctx.timezone)}


JOB = Job(name="foo", run=run, cron_variable="FOOJOB_CRON", default_cron="1 0 * * *")
