"""Background tasks started from callbacks, kept so that shutdown can cancel and await them
(an asyncio task nobody holds may be garbage-collected mid-flight)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
