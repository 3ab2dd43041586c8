"""Retries of failed fires: each pending attempt is made when it is due, once across replicas.

A scheduled or catch-up run that fails, of a job with ``retries``, queues its next attempt in the
database with its own record (``foojob_retries``, same transaction: ``bot.runner``), and NOTIFY
tells every replica at COMMIT. Each replica arms a timer for it; when it is due each one asks the
runner for that attempt, and the first to take the pending row (under the fire's lock) makes it —
the others find it gone. So the attempt is made once, by whichever replica is up, and a restart or
a replica's death loses none: pending attempts are read again at start-up and whenever the
listening connection comes back.

What it does not do: decide whether an attempt runs (paused, already taken: the runner does, in the
database), or retry anything itself (the runner queues the next attempt of a failed one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

from bot.control import PendingRetry
from bot.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

Key = tuple[str, datetime, int]
# A pending attempt still there after a try (a run in progress held its lock past the wait, the
# database was away): looked at again this long after.
AGAIN_S = 5.0


class Retrier:
    def __init__(self, pending: Callable[[str | None], Awaitable[list[PendingRetry]]],
                 on_due: Callable[[PendingRetry], Awaitable[Any]], jobs: Collection[str]) -> None:
        self._pending = pending
        self._on_due = on_due
        self._jobs = frozenset(jobs)
        self._strangers: set[str] = set()  # jobs of pending retries that this replica does not have
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._running: dict[Key, asyncio.Task[Any]] = {}  # attempts under way
        self._tasks: set[asyncio.Task[Any]] = set()  # the same, and those looking again afterwards
        self._stopped = False

    async def reload(self, job: str | None = None) -> None:
        """Arm a timer for every pending attempt of ``job`` (None: of every job) not armed yet, and
        drop the timers of attempts no longer pending (taken elsewhere, cancelled by a pause)."""
        try:
            pending = await self._pending(job)
        except DatabaseUnavailable as exc:
            log.debug("pending retries not read (%s): read again when the database is back", exc)
            return
        if self._stopped:
            return
        for stranger in {r.job for r in pending} - self._jobs - self._strangers:
            # A job this replica's catalogue does not have (its file was removed, or a rolling
            # deploy is half way): left to a replica that has it. Said once.
            self._strangers.add(stranger)
            log.warning("pending retries of %s, which is no job here: left alone (a replica that has the job "
                        "makes them)", stranger)
        pending = [r for r in pending if r.job in self._jobs]
        keys = {(r.job, r.scheduled_for, r.attempt) for r in pending}
        for key in [k for k in self._timers if (job is None or k[0] == job) and k not in keys]:
            self._timers.pop(key).cancel()
        loop = asyncio.get_running_loop()
        for retry in pending:
            key = (retry.job, retry.scheduled_for, retry.attempt)
            if key in self._timers or key in self._running:
                continue
            delay = max(0.0, (retry.due_at - datetime.now(UTC)).total_seconds())
            self._timers[key] = loop.call_later(delay, self._due, key, retry)

    def _due(self, key: Key, retry: PendingRetry) -> None:
        self._timers.pop(key, None)
        if self._stopped:
            return
        task = asyncio.get_running_loop().create_task(self._attempt(key, retry),
                                                      name=f"retry:{retry.job}:{retry.attempt}")
        self._running[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, key: Key, retry: PendingRetry) -> None:
        try:
            await self._on_due(retry)
        except DatabaseUnavailable as exc:
            log.debug("attempt %d of %s not made: %s", retry.attempt, retry.job, exc)
        except Exception:
            log.exception("attempt %d of %s for %s failed", retry.attempt, retry.job, retry.scheduled_for.isoformat())
        finally:
            self._running.pop(key, None)
        # Made here or elsewhere, or still pending (it could not be made now): look again a little
        # later, so that one still pending is tried again.
        if not self._stopped:
            await asyncio.sleep(AGAIN_S)
            await self.reload(retry.job)

    async def stop(self, grace_s: float) -> None:
        """No new attempt; the attempts under way finish (up to ``grace_s``)."""
        self._stopped = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
