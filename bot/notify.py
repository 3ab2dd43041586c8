"""Where run results and announcements go: the Slack incoming webhook, or stdout.

``publish`` never blocks and never raises: messages are queued and a background task delivers
them in order, so a slow or failing webhook never delays or fails a run. This first version keeps
the queue in memory (a few retries, then the message is dropped with an error in the log); the
durable outbox replaces the queue behind the same ``Notifier`` interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from bot.config import Secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A Slack message: ``text`` is the plain-text fallback (and what stdout shows)."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


class Notifier(Protocol):
    def publish(self, message: Message) -> None: ...

    async def aclose(self, within_s: float) -> None:
        """Deliver what is queued, for up to ``within_s`` seconds, then stop."""


# Slack's emoji codes, as a terminal shows them.
_EMOJI = {":white_check_mark:": "✅", ":x:": "❌", ":double_vertical_bar:": "⏸", ":arrow_forward:": "▶"}


class StdoutNotifier:
    """No webhook configured: each message's text on its own line of stdout."""

    def publish(self, message: Message) -> None:
        text = message.text
        for code, char in _EMOJI.items():
            text = text.replace(code, char)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    async def aclose(self, within_s: float) -> None:
        return None


class WebhookNotifier:
    RETRY_DELAYS = (1.0, 2.0, 4.0)
    MAX_QUEUE = 1000

    def __init__(self, url: Secret, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self._deliver_forever(), name="webhook-notifier")

    def publish(self, message: Message) -> None:
        if self._queue.qsize() >= self.MAX_QUEUE:
            self._queue.get_nowait()
            log.error("webhook queue full: dropped the oldest message")
        self._queue.put_nowait(message)

    async def _deliver_forever(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._deliver(message)
            finally:
                self._queue.task_done()

    async def _deliver(self, message: Message) -> None:
        assert self._session is not None
        body = json.dumps(message.payload())
        for attempt, delay in enumerate((*self.RETRY_DELAYS, None), start=1):
            problem: str
            try:
                async with self._session.post(self._url.reveal(), data=body,
                                              headers={"Content-Type": "application/json"}) as resp:
                    if resp.status < 300:
                        return
                    problem = f"HTTP {resp.status}"
                    if resp.status in (400, 403, 404, 410):  # Slack will never accept it
                        log.error("webhook refused a message for good (%s): %s", problem,
                                  (await resp.text())[:200])
                        return
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Never log the exception itself: aiohttp puts the URL (a secret) in its text.
                problem = type(exc).__name__
            if delay is None:
                log.error("webhook delivery failed %d times (%s); message dropped", attempt, problem)
                return
            log.warning("webhook delivery failed (%s); retrying in %.0f s", problem, delay)
            await asyncio.sleep(delay)

    async def aclose(self, within_s: float) -> None:
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), within_s)
        except TimeoutError:
            log.warning("shutting down with %d undelivered webhook message(s)", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
