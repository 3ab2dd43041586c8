"""Running an SQL job: its statements, in the run's transaction, and the result as the contract says.

The statements (split by ``bot.sqltext`` when the file was read) run on the run's connection,
inside its transaction and savepoint (``bot.runner``): an error or a timeout rolls back all of
them. All but the last go in one round trip (the simple query protocol takes several statements
at once); the last is prepared, so that its rows, or its command tag, come back:

* rows: ``{"rowCount": N, "rows": [...]}``, at most the first ``MAX_ROWS`` rows as objects
  (column → value, a text at most ``MAX_TEXT`` characters), read through a cursor so that a big
  result is counted, not held;
* no rows: ``{"command": "<status tag>"}`` (``"DELETE 42"``, ``"REFRESH MATERIALIZED VIEW"``).

Values: times in RFC 3339 (in the job's zone), numbers as numbers (a ``numeric`` too, when JSON
carries it exactly), booleans and nulls as JSON's, JSON columns as the JSON they hold, any other
value as PostgreSQL writes it (``infinity``, ``NaN``, ``[1,5)``, ``1 day 02:00:00``). A column
name seen twice in a row gets a suffix (``count``, ``count_2``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bot.model import JobContext
from bot.timefmt import rfc3339

MAX_ROWS = 20
COUNT_STEP = 1_000_000
MAX_TEXT = 1000  # characters of one value: a result is stored with its run and posted to Slack


def json_value(value: Any, tz: ZoneInfo) -> Any:
    """One column's value, as the result shows it."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")  # as PostgreSQL
    if isinstance(value, decimal.Decimal):
        return _numeric(value)
    if isinstance(value, dt.datetime):
        # asyncpg reads 'infinity' and '-infinity' as the largest and smallest datetimes (naive).
        if value.tzinfo is None and value in (dt.datetime.max, dt.datetime.min):
            return "infinity" if value == dt.datetime.max else "-infinity"
        return rfc3339(value, tz) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, dt.date):
        if value in (dt.date.max, dt.date.min):
            return "infinity" if value == dt.date.max else "-infinity"
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _interval(value)
    if isinstance(value, dict):  # json/jsonb, decoded by the connection's codec (bot.db)
        return value
    if isinstance(value, asyncpg.Range):
        return _range(value, tz)
    if isinstance(value, asyncpg.BitString):
        return value.as_string()
    if isinstance(value, list | tuple):
        return [json_value(item, tz) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return json_value("\\x" + bytes(value).hex(), tz)  # as PostgreSQL writes bytea
    return json_value(str(value), tz)


def _numeric(value: decimal.Decimal) -> Any:
    """A number when JSON can carry it exactly: an integer of any size, or a fraction that a float
    holds exactly; otherwise (and for NaN, Infinity) its text."""
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if decimal.Decimal(repr(as_float)) == value else str(value)


def _interval(value: dt.timedelta) -> str:
    """As PostgreSQL writes an interval (``1 day 02:00:00``, ``-01:00:00``); asyncpg has already made
    a month 30 days."""
    micros = value // dt.timedelta(microseconds=1)
    sign, micros = ("-" if micros < 0 else ""), abs(micros)
    days, micros = divmod(micros, 86_400_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" + (f".{micros:06d}" if micros else "")
    if not days:
        return sign + clock
    return f"{sign}{days} day{'s' if days != 1 else ''} {sign}{clock}"


def _range(value: asyncpg.Range, tz: ZoneInfo) -> str:
    if value.isempty:
        return "empty"
    low = "" if value.lower_inf else str(json_value(value.lower, tz))
    high = "" if value.upper_inf else str(json_value(value.upper, tz))
    return f"{'[' if value.lower_inc else '('}{low},{high}{']' if value.upper_inc else ')'}"


def _row(record: asyncpg.Record, tz: ZoneInfo) -> dict[str, Any]:
    """A row as an object; a column name seen before gets a suffix (``count``, ``count_2``)."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        name, n = key, 1
        while name in row:
            n += 1
            name = f"{key}_{n}"
        row[name] = json_value(value, tz)
    return row


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
        # The first rows are read; the rest only counted, on the server (MOVE FORWARD), a round
        # trip a million rows.
        cursor = await statement.cursor()
        rows = [_row(record, ctx.timezone) for record in await cursor.fetch(MAX_ROWS)]
        count = len(rows)
        if count == MAX_ROWS:
            while (skipped := await cursor.forward(COUNT_STEP)) > 0:
                count += skipped
                if skipped < COUNT_STEP:
                    break
        return {"rowCount": count, "rows": rows}

    return run
