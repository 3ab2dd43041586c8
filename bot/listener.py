"""LISTEN/NOTIFY: every replica hears pause, resume and schedule changes within moments.

The database stays the source of truth — a fire reads the pause state when it fires — so a
missed notification can never cause a run while paused; notifications only make the rest prompt
(the automatic-resume timer on every replica, the schedule re-armed). The listening
connection is a connection of its own (LISTEN does not survive a pool's recycling). When it is
lost (the server restarted, an admin cut it) it comes back by itself, and the caller's
``on_connect`` re-reads what may have been missed meanwhile.

The same connection carries the replica's heartbeat (``beat``, every ``every_s`` seconds): the
statement that says "this replica is up" is also what finds out that a silently dead network has
taken the connection. One statement every 10 s is the whole cost of an idle replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from bot.db import CONNECTION_ERRORS, connect

log = logging.getLogger(__name__)

Handler = Callable[[str], None]
Beat = Callable[[asyncpg.Connection], Awaitable[None]]


class Listener:
    def __init__(self, dsn: str, handlers: Mapping[str, Handler],
                 on_connect: Callable[[], Awaitable[None]], beat: Beat, every_s: float) -> None:
        self._dsn = dsn
        self._handlers = handlers
        self._on_connect = on_connect
        self._beat = beat
        self._every = every_s
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.beaten = asyncio.Event()  # the first heartbeat is done

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay, lost_before = 0.5, False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, closed=closed: closed.set())
                for channel, handler in self._handlers.items():
                    await conn.add_listener(channel, self._dispatch(handler))
                self.connected.set()
                log.info("listening for changes from other replicas%s", " again" if lost_before else "")
                await self._on_connect()
                delay = 0.5
                while not closed.is_set():
                    # Also what notices a silent network loss, which fires no termination listener.
                    await asyncio.wait_for(self._beat(conn), self._every)
                    self.beaten.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), self._every)
                raise ConnectionError("the listening connection was closed")
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                self.connected.clear()
                lost_before = True
                log.warning("listening connection lost (%s); reconnecting in %.1f s", type(exc).__name__, delay)
            except Exception:
                # A bug in on_connect or the heartbeat must not end the listener (and the heartbeat
                # with it: the replica would look gone to the others while it runs on).
                self.connected.clear()
                lost_before = True
                log.exception("listening connection: unexpected error; reconnecting in %.1f s", delay)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _dispatch(handler: Handler) -> Callable[..., Any]:
        def callback(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                handler(payload)
            except Exception:
                log.exception("handling a notification failed")

        return callback
