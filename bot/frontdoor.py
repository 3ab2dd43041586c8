"""The HTTP server's door: idle and slow connections cannot take the service down.

asyncio keeps an accepted socket open for as long as the client does, and aiohttp waits for a
request's headers for ever; 1,100 idle connections from another host exhausted the process's file
descriptors, so that ``/healthz`` timed out, the pool could not reconnect after a database blip,
and asyncio logged ``socket.accept() out of system resource`` in a tight loop. Here:

* at most ``max_connections`` are open at once (a quarter of the descriptor limit, so the pool,
  the LISTEN connection, Slack and the webhook always have theirs). At the cap, a new connection
  takes the place of the oldest one that has not sent its request headers yet, or else of the
  idle keep-alive connection that has waited longest for its next request (an idle socket cannot
  hold a place that a real client needs, whether it spoke once or never); when every open
  connection is a request in progress, the new one is closed at once, which frees its descriptor;
* a connection must deliver its request's headers within ``header_timeout_s`` of connecting, or
  it is closed (an idle socket that never speaks, a slowloris);
* aiohttp closes an idle keep-alive connection after ``KEEPALIVE_S``;
* errors a client can cause (refused connections, malformed requests, descriptors running out)
  are logged at most once a minute per kind, one line, no traceback (:class:`OncePerMinute`).

What it does not do: anything about what a request says (``bot.http`` answers bad requests), or
limit a client's rate (the service has no expensive endpoint a client could call often enough).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
HEADER_TIMEOUT_S = 5.0
_END_OF_HEADERS = b"\r\n\r\n"


def default_max_connections() -> int:
    """A quarter of the soft descriptor limit, between 16 and 1,024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))


class OncePerMinute(logging.Filter):
    """Lets a record through at most once a minute per (logger, message template), without its
    traceback, saying how many were held back: a client cannot flood the log."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:80])
        now = time.monotonic()
        last, held = self._last.get(key, (-self._every_s, 0))
        if now - last < self._every_s:
            self._last[key] = (last, held + 1)
            return False
        self._last[key] = (now, 0)
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            record.args = None
        record.exc_info, record.exc_text = None, None
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in the last minute)"
            record.args = None
        return True


def quiet_client_errors() -> None:
    """What aiohttp and asyncio log for a client's doing (malformed requests, connections reset,
    accept() running out of descriptors) becomes one line a minute per kind."""
    limiter = OncePerMinute()
    for name in ("aiohttp.server", "aiohttp.access", "asyncio", "asyncpg.pool", __name__):
        logging.getLogger(name).addFilter(limiter)


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: the header deadline and the count."""

    def __init__(self, door: GuardedServer, inner: Any) -> None:
        self._door = door
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""
        self.last_data = time.monotonic()  # when the client last sent anything

    @property
    def idle(self) -> bool:
        """Whether this connection sent its request(s), was answered, and is waiting (keep-alive)
        for another: aiohttp's handler waits on ``_waiter`` then (aiohttp 3.x's own test of idleness,
        RequestHandler._process_keepalive)."""
        waiter = getattr(self._inner, "_waiter", None)
        return (self._deadline is None and not getattr(self._inner, "_request_in_progress", True)
                and waiter is not None and not waiter.done())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._door.live += 1
        self._transport = transport  # type: ignore[assignment]
        self._deadline = asyncio.get_running_loop().call_later(self._door.header_timeout_s, self._too_slow)
        self._door.waiting[self] = None
        self._door.open[self] = None
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._door.slow += 1
        log.warning("closed a connection that sent no complete request headers within %.0f s",
                    self._door.header_timeout_s)
        self.evict()

    def evict(self) -> None:
        self._door.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        if self._deadline is not None:
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self._deadline.cancel()
                self._deadline = None
                self._door.waiting.pop(self, None)
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._door.live -= 1
        self._door.waiting.pop(self, None)
        self._door.open.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _JsonErrors(RequestHandler):
    """aiohttp answers a request it cannot parse (a header over 8 KiB, bad chunking) in plain
    text, before any handler runs: the same answer here, as ``{"error": …}`` like every other."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        if status >= 500:
            return response
        answer = web.json_response({"error": (message or "bad request").splitlines()[0][:200]}, status=status)
        answer.force_close()
        return answer


class _Refuse(asyncio.Protocol):
    def __init__(self, door: GuardedServer) -> None:
        self._door = door

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._door.refused += 1
        log.warning("refused a connection: %d are open, the most this process takes", self._door.live)
        transport.abort()  # type: ignore[attr-defined]


class GuardedServer:
    """A protocol factory in front of aiohttp's ``web.Server`` (everything else is passed through)."""

    def __init__(self, inner: web.Server, *, max_connections: int, header_timeout_s: float) -> None:
        self._server = inner
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.live = 0
        self.refused = 0
        self.slow = 0
        self.evicted = 0
        # Connections still to send their headers, oldest first (a dict keeps insertion order).
        self.waiting: dict[_Guard, None] = {}
        self.open: dict[_Guard, None] = {}  # every connection open

    def __call__(self) -> asyncio.Protocol:
        if self.live >= self.max_connections:
            if self.waiting:
                self.evicted += 1
                log.warning("closed the oldest connection still to send a request: %d are open, the most this "
                            "process takes", self.live)
                next(iter(self.waiting)).evict()
            elif idle := [guard for guard in self.open if guard.idle]:
                self.evicted += 1
                log.warning("closed the idle keep-alive connection that had waited longest: %d are open, the most "
                            "this process takes", self.live)
                min(idle, key=lambda guard: guard.last_data).evict()
            else:
                return _Refuse(self)
        # web.Server() would build aiohttp's RequestHandler; ours differs only in its error page.
        # (_loop and _kwargs: what web.Server.__call__ itself passes, aiohttp 3.x.)
        return _Guard(self, _JsonErrors(self._server, loop=self._server._loop, **self._server._kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose server is a :class:`GuardedServer` (``TCPSite`` takes it as it is)."""

    def __init__(self, app: web.Application, *, max_connections: int | None = None,
                 header_timeout_s: float = HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=KEEPALIVE_S, **kwargs)
        self._max_connections = max_connections or default_max_connections()
        self._header_timeout_s = header_timeout_s
        # asyncio accepts up to `backlog` connections in one go before any of them is looked at:
        # a burst must not run past the cap by more than that.
        self.backlog = max(8, min(128, self._max_connections // 2))

    async def _make_server(self) -> web.Server:
        inner = await super()._make_server()
        return GuardedServer(inner, max_connections=self._max_connections,  # type: ignore[return-value]
                             header_timeout_s=self._header_timeout_s)
