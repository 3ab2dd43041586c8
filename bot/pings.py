"""Heartbeat pings with the Healthchecks.io protocol (``FOOJOB_HEARTBEAT_URL``), best effort.

A team that already watches its cron jobs on Healthchecks.io (or a self-hosted Healthchecks, or
anything speaking its pinging API) sees foojob's scheduled runs there too, and Healthchecks
alerts when the pings stop coming — which is the one failure foojob cannot report itself: every
replica down. For each scheduled run the caller says :meth:`Pinger.started`, then
:meth:`Pinger.succeeded` or :meth:`Pinger.failed`; they become:

- ``GET  <url>/start?rid=<uuid>``  — Healthchecks shows the check as started, measures the run, and
  marks it down if no success follows within the check's grace time;
- ``GET  <url>?rid=<uuid>``        — success;
- ``POST <url>/fail?rid=<uuid>``   — failure, with the reason as a ``text/plain`` UTF-8 body: the
  pinging API takes HEAD, GET and POST alike, and stores a POST's body as the event's diagnostic.

What the Healthchecks docs say, and what this module does with it:

- ``rid`` is an optional run id that pairs a start with its success or failure, so that durations
  come out right when runs overlap (several jobs sharing one check). It must be a UUID in the
  canonical text form (lowercase, no braces) — Healthchecks answers 400 otherwise. We derive it
  from the caller's run key with UUID5: the same run key always gives the same rid, so the caller
  keeps no state between ``started`` and its outcome.
- A ping body is stored up to a limit: 100 kB on healthchecks.io, ``PING_BODY_LIMIT`` (default
  10 000 bytes) on a self-hosted instance, and the rest is cut off there. We cut the reason to
  10 000 bytes ourselves (on a character boundary, marked with "…"), so every instance keeps all
  we send, and a huge traceback never costs a slow upload. (The runner's error is shorter anyway.)
- Successful pings answer 200 (201 when a slug URL with ``?create=1`` created the check). Any
  other answer, a refused connection or a timeout is a failed ping: logged, never retried — a retry
  would hold back the pings behind it, and a start or success that arrives late is worse than one
  that does not arrive (Healthchecks alerts on the silence, which is the point). A query already in
  the URL (``?create=1``) is kept.

The rules of the house: a ping never delays or fails a run. The methods the run calls are plain
(not coroutines) and return at once: they put the ping on a queue that one background task per
Pinger sends, in order (a run's start before its success), each request bounded by ``timeout_s``.
A failing endpoint is logged at most once a minute, one WARNING line without a traceback, and
never with the URL: it identifies the check, so anyone holding it can send pings in our name.
Not even aiohttp's exception text is logged (it quotes the URL), only its class name or the HTTP
status. :meth:`Pinger.aclose` sends what is still queued for up to ``within_s`` seconds and drops
the rest. This module knows nothing of runs or jobs beyond the run key it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import aiohttp
from yarl import URL

from bot.config import Secret

log = logging.getLogger(__name__)

# The smaller of the two documented limits (self-hosted default, healthchecks.io's is 100 kB), in
# bytes of UTF-8.
BODY_LIMIT = 10_000
# Pings waiting to be sent. Two or three per run and a 5 s timeout each keep the queue short even
# with the endpoint stalling; the bound is for a loop of runs gone wrong, not for normal service.
MAX_QUEUED = 100
# UUID5 namespace of run ids: fixed, so that a run key always maps to the same rid.
_RID_NAMESPACE = uuid.UUID("5b0f8a34-7f55-4b5e-9d0c-6c3f2f7e1a90")
_TRUNCATED = "…"


def run_id(run_key: str) -> str:
    """The ``rid`` of a run: a UUID in Healthchecks' canonical form, the same for the same key."""
    return str(uuid.uuid5(_RID_NAMESPACE, run_key))


def fit_body(reason: str, limit: int = BODY_LIMIT) -> bytes:
    """``reason`` as UTF-8, cut to at most ``limit`` bytes (on a character boundary, marked "…")."""
    data = reason.encode()
    if len(data) <= limit:
        return data
    marker = _TRUNCATED.encode()
    return data[:limit - len(marker)].decode(errors="ignore").encode() + marker


@dataclass(frozen=True)
class _Ping:
    kind: str  # "start", "success" or "fail": what the log says, never the URL
    run_key: str
    body: bytes | None = None  # a POST's body; None for a GET


JOB_PLACEHOLDER = "{job}"


def per_job(url: Secret | None) -> bool:
    """Whether FOOJOB_HEARTBEAT_URL names a check per job (holds ``{job}``)."""
    return url is not None and JOB_PLACEHOLDER in url.reveal()


class Pinger:
    """Pings one Healthchecks check. ``start()`` in the loop, the run's calls, ``aclose()`` last."""

    def __init__(self, url: Secret, *, timeout_s: float = 5.0, warn_every_s: float = 60.0) -> None:
        # "{job}" in the URL is each job's name: a check per job (Healthchecks' slug URLs,
        # https://hc-ping.com/<ping key>/<slug>). Without it, the URL is one check.
        self._template = url.reveal()
        self._url = URL(self._template.replace(JOB_PLACEHOLDER, "job"))
        self._timeout_s = timeout_s
        self._warn_every_s = warn_every_s
        self._queue: asyncio.Queue[_Ping | None] = asyncio.Queue()  # None: the end, from aclose
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._last_warning = -math.inf  # time.monotonic() of the last WARNING line
        self._unreported = 0  # failures since that line that did not get one of their own
        self._failing = False
        self._in_flight: _Ping | None = None  # the ping being sent, if any

    def start(self) -> None:
        """Start the sending task (idempotent). Pings queued before it go out then, in order."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._send_all(), name="heartbeat-pings")

    def started(self, run_key: str) -> None:
        """A scheduled run started: ``GET <url>/start``. Returns at once."""
        self._put(_Ping("start", run_key))

    def succeeded(self, run_key: str) -> None:
        """The run succeeded: ``GET <url>``. Returns at once."""
        self._put(_Ping("success", run_key))

    def failed(self, run_key: str, reason: str) -> None:
        """The run failed: ``POST <url>/fail`` with ``reason`` as the body. Returns at once."""
        self._put(_Ping("fail", run_key, fit_body(reason)))

    async def aclose(self, within_s: float) -> None:
        """Send what is queued for up to ``within_s`` seconds, drop the rest, close the session."""
        if self._closing:
            return
        self.start()  # pings queued by a caller that never started us still get their chance
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=within_s)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        dropped = sum(1 for ping in self._drain() if ping is not None)
        if self._in_flight is not None:
            dropped += 1
        if dropped:
            log.warning("heartbeat: %d ping(s) not sent before shutdown", dropped)
        if self._session is not None:
            await self._session.close()

    def _put(self, ping: _Ping) -> None:
        if self._closing:
            log.debug("heartbeat ping (%s of %s) after shutdown: not sent", ping.kind, ping.run_key)
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self._report(ping, "too many pings waiting, this one is dropped")
            return
        self._queue.put_nowait(ping)

    def _drain(self) -> list[_Ping | None]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _send_all(self) -> None:
        # The session is made here, inside the loop (aiohttp wants that), and closed by aclose().
        self._session = aiohttp.ClientSession()
        while (ping := await self._queue.get()) is not None:
            self._in_flight = ping
            await self._send(self._session, ping)
            self._in_flight = None

    async def _send(self, session: aiohttp.ClientSession, ping: _Ping) -> None:
        url = self._url
        if JOB_PLACEHOLDER in self._template:
            url = URL(self._template.replace(JOB_PLACEHOLDER, quote(ping.run_key.split(":", 1)[0], safe="")))
        if ping.kind != "success":
            url = url.with_path(url.path.rstrip("/") + "/" + ping.kind).with_query(url.query)
        url = url.update_query(rid=run_id(ping.run_key))
        try:
            # One bound for the whole exchange — DNS, connect, request, answer — so that a stalling
            # endpoint holds the pings behind this one back by timeout_s at most.
            async with asyncio.timeout(self._timeout_s):
                if ping.body is None:
                    request = session.get(url)
                else:
                    request = session.post(url, data=ping.body,
                                           headers={"Content-Type": "text/plain; charset=utf-8"})
                async with request as resp:
                    await resp.read()
                    status = resp.status
        except TimeoutError:
            self._report(ping, f"no answer within {self._timeout_s:g} s")
            return
        except Exception as exc:  # best effort: nothing a ping does may stop the pings after it
            # Not str(exc): aiohttp's messages carry the URL.
            self._report(ping, type(exc).__name__)
            return
        if not 200 <= status < 300:
            self._report(ping, f"HTTP {status}")
            return
        if self._failing:
            self._failing = False
            log.info("heartbeat pings get through again")

    def _report(self, ping: _Ping, detail: str) -> None:
        """One WARNING line a minute at most; the failures in between are counted in the next."""
        self._failing = True
        now = time.monotonic()
        if now - self._last_warning < self._warn_every_s:
            self._unreported += 1
            return
        more = f"; {self._unreported} more failed since the last warning" if self._unreported else ""
        log.warning("heartbeat ping failed: %s (%s of %s)%s", detail, ping.kind, ping.run_key, more,
                    extra={"error": detail})
        self._last_warning, self._unreported = now, 0


class Pings(Protocol):
    """What a caller holds: a :class:`Pinger`, or a :class:`NoPinger` when no URL is set."""

    def start(self) -> None: ...
    def started(self, run_key: str) -> None: ...
    def succeeded(self, run_key: str) -> None: ...
    def failed(self, run_key: str, reason: str) -> None: ...
    async def aclose(self, within_s: float) -> None: ...


class NoPinger:
    """``FOOJOB_HEARTBEAT_URL`` unset: the same methods, doing nothing."""

    def start(self) -> None:
        return None

    def started(self, run_key: str) -> None:
        return None

    def succeeded(self, run_key: str) -> None:
        return None

    def failed(self, run_key: str, reason: str) -> None:
        return None

    async def aclose(self, within_s: float) -> None:
        return None


def make_pinger(url: Secret | None, *, timeout_s: float = 5.0) -> Pings:
    """A :class:`Pinger` for ``Settings.heartbeat_url``, or a :class:`NoPinger` when it is unset."""
    return NoPinger() if url is None else Pinger(url, timeout_s=timeout_s)
