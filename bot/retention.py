"""Retention: what is older than ``FOOJOB_KEEP_RUNS`` is deleted, at start-up and then hourly.

Three things grow for ever otherwise: the runs (``foojob_runs``), the Slack messages already dealt
with (``foojob_outbox`` rows delivered, or set aside for good after Slack refused them), and the
audit trail (``foojob_control_events``). :class:`Pruner` deletes those older than the setting,
when the service starts and then every hour, until it stops.

One replica at a time: a prune holds a session-level advisory lock, (7263522, 1), for its whole
length; a replica that finds it taken skips its turn (:func:`prune` returns None), since the
other one is doing the same work. The deletes go in batches, oldest ids first, each a statement
(so a transaction) of its own: no long lock on a big table, and the runner and the outbox
dispatcher never wait behind a clean-up of months of history.

What it deliberately does not do:

* delete a message still to deliver, whatever its age: after an outage of weeks the queue still
  holds every report, and the outbox's promise (at least once, never lost) holds too;
* delete a run that did not come before its job's last success, whatever its age. So the newest
  run of a job stays: ``/status`` shows it as the last run, and start-up's catch-up asks whether
  the job has ever run (an emptied history would look like a first start, which never catches
  up). So does its last success (the last-success metric), and the failure streak since: a run
  counts the streak to alert once per streak and to announce the recovery, and a streak cut short
  by age would alert again, or never. A job that has been failing for longer than the setting
  keeps its whole streak, which its alert has told about;
* follow a cron or use APScheduler: an hourly clean-up needs neither, and the one missed by a
  restart is done by the next start-up;
* vacuum, or touch ``foojob_request_keys`` and ``foojob_replicas``: autovacuum reclaims the
  space, and those two tables sweep themselves as they are written.

Audit events are also what catch-up reads to know which schedule was in force at a missed instant;
with the default settings (90 days kept, a 1-hour misfire grace) nothing it needs is ever deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from bot.db import acquire
from bot.errors import DatabaseUnavailable
from bot.timefmt import span

log = logging.getLogger(__name__)

EVERY = timedelta(hours=1)
BATCH = 1000


@dataclass(frozen=True)
class Pruned:
    """How many rows one prune deleted, by kind."""

    runs: int
    messages: int
    events: int

    @property
    def total(self) -> int:
        return self.runs + self.messages + self.events


async def prune(pool: asyncpg.Pool, queries: Mapping[str, str], keep: timedelta, *,
                batch: int = BATCH) -> Pruned | None:
    """Delete what is older than ``keep``; None when another replica is pruning right now.

    Raises DatabaseUnavailable when the database cannot be reached or the connection breaks; what
    was deleted until then stays deleted (each batch commits on its own).
    """
    if keep <= timedelta(0):
        raise ValueError("keep must be longer than zero")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    began = time.monotonic()
    async with acquire(pool) as conn:
        try:
            if not await conn.fetchval(queries["retention_lock"]):
                log.debug("retention: another replica is pruning; leaving it to them")
                return None
            cutoff: datetime = await conn.fetchval(queries["retention_cutoff"], keep)
            pruned = Pruned(
                runs=await _in_batches(conn, queries["prune_runs"], cutoff, batch),
                messages=await _in_batches(conn, queries["prune_messages"], cutoff, batch),
                # The reports of missed fires are audit too.
                events=await _in_batches(conn, queries["prune_events"], cutoff, batch)
                + await _in_batches(conn, queries["prune_missed"], cutoff, batch),
            )
        except BaseException:
            # Cancelled, or the connection broke: unlock if the connection still can, but let the
            # first error through. A session that is gone took its lock with it; one that cannot be
            # unlocked is closed, taking its lock along (the pool does not reset connections:
            # bot.db._keep_as_is).
            try:
                await conn.execute(queries["retention_unlock"])
            except BaseException:
                conn.terminate()
            raise
        await conn.execute(queries["retention_unlock"])
    elapsed_ms = round((time.monotonic() - began) * 1000)
    if pruned.total:
        log.info("pruned %d runs, %d messages, %d audit events older than %s", pruned.runs, pruned.messages,
                 pruned.events, span(keep), extra={"status": "pruned", "duration_ms": elapsed_ms})
    else:
        log.debug("retention: nothing older than %s to prune", span(keep))
    return pruned


async def _in_batches(conn: asyncpg.Connection, query: str, cutoff: datetime, batch: int) -> int:
    """Run a delete of at most ``batch`` rows until one comes back short; the rows it deleted."""
    total = 0
    while True:
        deleted: int = await conn.fetchval(query, cutoff, batch)
        total += deleted
        if deleted < batch:
            return total


class Pruner:
    """Prunes at start and then every ``every`` (default 1 hour), until stopped.

    A database that cannot be reached costs one warning line, and the next turn tries again; any
    other error is logged with its traceback, and the next turn tries again too.
    """

    def __init__(self, pool: asyncpg.Pool, queries: Mapping[str, str], keep: timedelta,
                 every: timedelta = EVERY) -> None:
        if keep <= timedelta(0) or every <= timedelta(0):
            raise ValueError("keep and every must be longer than zero")
        self._pool = pool
        self._q = queries
        self._keep = keep
        self._every = every
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the pruner is already started")
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        """Stop now: a prune in progress is cancelled (the batch under way rolls back, the ones
        before it stay done)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await prune(self._pool, self._q, self._keep)
            except DatabaseUnavailable as exc:
                log.warning("retention: %s; trying again in %s", exc, span(self._every))
            except Exception:
                log.exception("retention: unexpected error; trying again in %s", span(self._every))
            # An event rather than a sleep: stopping ends the wait even if a cancellation was lost
            # in a prune's clean-up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every.total_seconds())
