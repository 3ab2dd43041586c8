"""Running an SQL job: its statements, in the run's transaction, and the result as the contract says.

The statements (split by ``bot.sqltext`` when the file was read) run on the run's connection,
inside its transaction and savepoint (``bot.runner``): an error or a timeout rolls back all of
them. All but the last go in one round trip (the simple query protocol takes several statements
at once); the last is prepared, so that its rows, or its command tag, come back:

* rows: ``{"rowCount": N, "rows": [...]}``, at most the first ``MAX_ROWS`` rows as objects
  (column → value), read through a cursor so that a big result is counted, not held;
* no rows: ``{"command": "<status tag>"}`` (``"DELETE 42"``, ``"REFRESH MATERIALIZED VIEW"``).

Values: times in RFC 3339 (in the job's zone), numbers as numbers (a ``numeric`` too: an integer
when it is one), booleans and nulls as JSON's, JSON columns as the JSON they hold, any other value
as its text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from bot.model import JobContext
from bot.timefmt import rfc3339

MAX_ROWS = 20


def json_value(value: Any, tz: ZoneInfo) -> Any:
    """One column's value, as the result shows it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN and Infinity are not JSON
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() and abs(value) < 2**63 else float(value)
    if isinstance(value, dt.datetime):
        return rfc3339(value, tz) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):  # json/jsonb, decoded by the connection's codec (bot.db)
        return value
    if isinstance(value, list | tuple):
        return [json_value(item, tz) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()  # as PostgreSQL writes bytea
    return str(value)


def sql_job_runner(statements: list[str]) -> Callable[[JobContext], Awaitable[dict[str, Any]]]:
    """The ``run`` of an SQL job made of ``statements`` (at least one)."""
    *before, last = statements
    script = ";\n".join(before)

    async def run(ctx: JobContext) -> dict[str, Any]:
        if script:
            await ctx.conn.execute(script)
        statement = await ctx.conn.prepare(last)
        if not statement.get_attributes():
            await statement.fetch()
            return {"command": statement.get_statusmsg()}
        rows: list[dict[str, Any]] = []
        count = 0
        async for record in statement.cursor(prefetch=MAX_ROWS + 1):
            count += 1
            if len(rows) < MAX_ROWS:
                rows.append({key: json_value(value, ctx.timezone) for key, value in record.items()})
        return {"rowCount": count, "rows": rows}

    return run
