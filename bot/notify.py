"""Where run results and announcements go: Slack (through the outbox: the incoming webhook, or a
channel through the Web API when ``SLACK_CHANNEL`` or a job's ``channel`` is set), or stdout.

A message is *staged* inside the transaction of what it reports (the run and its record, the
pause): with a webhook it is a row of ``foojob_outbox`` committed with them, so it can be lost
only together with the run itself; ``bot.outbox.Dispatcher`` delivers it later, with retries.
Without a webhook it is printed once the transaction commits. ``publish_now`` is for the one case
where there is no transaction to write into — the database is unreachable — and sends straight
to the webhook, best effort.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import aiohttp
import asyncpg

from bot.config import Secret

log = logging.getLogger(__name__)

AfterCommit = Callable[[], None]


Method = Literal["post", "update", "reply"]


@dataclass(frozen=True)
class Message:
    """A Slack message: ``text`` is the plain-text fallback (and what stdout shows).

    Where it goes is data on it: ``job`` (whose channel, and whose backlog), and for a run's card
    in a channel, ``card`` (``run:<id>``) with ``method``: ``post`` the card, ``update`` it (edited
    in place once posted), or ``reply`` in its thread. ``success``: a run's plain success (its post,
    or its card's edit), which a backlog may fold into one line; ``running``: the card of a run
    still going (folded with its edit when both wait in a backlog)."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    job: str | None = None
    card: str | None = None
    method: Method = "post"
    success: bool = False
    running: bool = False

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


def outbox_row(message: Message, channel: str | None) -> dict[str, Any]:
    """The outbox row of ``message`` (sql/queries.sql outbox_add, finish_run): ``channel`` None is
    the webhook."""
    return {"payload": message.payload(), "channel": channel, "method": message.method, "card": message.card,
            "job": message.job, "kind": "success" if message.success else "running" if message.running else None}


class Notifier(Protocol):
    def in_transaction(self, message: Message) -> tuple[dict[str, Any] | None, AfterCommit]:
        """For a message about to be committed: the outbox row to write in the same transaction
        (None: no outbox), and what to do once the transaction has committed."""

    def cards(self, job: str) -> bool:
        """Whether ``job``'s messages go to a channel through the Web API, where a run's card can be
        posted and edited (the webhook cannot edit)."""

    def publish_now(self, message: Message) -> None:
        """Best effort, outside any transaction (the database cannot be written)."""

    async def aclose(self, within_s: float) -> None: ...


def nothing() -> None:
    """What to do after COMMIT when there is nothing to do."""
    return None


# Slack's emoji codes, as a terminal shows them.
_EMOJI = {":white_check_mark:": "✅", ":x:": "❌", ":double_vertical_bar:": "⏸", ":arrow_forward:": "▶",
          ":calendar:": "📅", ":fast_forward:": "⏩", ":leftwards_arrow_with_hook:": "↩", ":warning:": "⚠️",
          ":rotating_light:": "🚨", ":large_green_circle:": "🟢"}


class StdoutNotifier:
    """No webhook configured: each message's text on its own line of stdout, once committed."""

    def in_transaction(self, message: Message) -> tuple[dict[str, Any] | None, AfterCommit]:
        return None, lambda: self.publish_now(message)

    def cards(self, job: str) -> bool:
        return False

    def publish_now(self, message: Message) -> None:
        text = message.text
        for code, char in _EMOJI.items():
            text = text.replace(code, char)
        # A terminal is not Slack: show what was escaped for Slack (a reason "<!channel>") as typed.
        text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    async def aclose(self, within_s: float) -> None:
        return None


class SilentNotifier:
    """CLI commands without a webhook: the command prints its own answer."""

    def in_transaction(self, message: Message) -> tuple[dict[str, Any] | None, AfterCommit]:
        return None, nothing

    def cards(self, job: str) -> bool:
        return False

    def publish_now(self, message: Message) -> None:
        return None

    async def aclose(self, within_s: float) -> None:
        return None


class OutboxNotifier:
    """Messages become rows of the outbox, in the caller's transaction: to the webhook, or to a
    channel (``channel``: SLACK_CHANNEL; ``job_channels``: a job's own ``channel``) through the Web
    API with ``bot_token``."""

    def __init__(self, url: Secret | None, *, channel: str | None = None,
                 job_channels: Mapping[str, str] | None = None, bot_token: Secret | None = None,
                 api_url: str = "https://slack.com/api/") -> None:
        self._url = url
        self._channel = channel
        self._job_channels = dict(job_channels or {})
        self._token, self._api_url = bot_token, api_url
        self._direct: set[asyncio.Task[None]] = set()
        # Set by the service to wake its outbox dispatcher once the message is committed.
        self.on_committed: AfterCommit = nothing

    def channel_of(self, job: str | None) -> str | None:
        """The channel ``job``'s messages go to (None: the webhook)."""
        return self._job_channels.get(job or "") or self._channel

    def cards(self, job: str) -> bool:
        return self.channel_of(job) is not None

    @property
    def cards_anywhere(self) -> bool:
        """Whether any message goes to a channel (SLACK_CHANNEL, or a job's)."""
        return self._channel is not None or bool(self._job_channels)

    def in_transaction(self, message: Message) -> tuple[dict[str, Any] | None, AfterCommit]:
        channel = self.channel_of(message.job)
        if channel is None and self._url is None:  # only some jobs have a channel: the rest go to stdout
            return None, lambda: StdoutNotifier().publish_now(message)
        if channel is None and message.method != "post":
            message = replace(message, method="post", card=None)  # the webhook cannot edit nor thread
        return outbox_row(message, channel), self.on_committed

    def publish_now(self, message: Message) -> None:
        task = asyncio.ensure_future(self._send_direct(message))
        self._direct.add(task)
        task.add_done_callback(self._direct.discard)

    async def _send_direct(self, message: Message) -> None:
        from bot.outbox import post, post_to_channel  # the same HTTP rules as the dispatcher

        channel = self.channel_of(message.job)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for delay in (1.0, 2.0, 4.0, None):
                if channel is not None and self._token is not None:
                    outcome = await post_to_channel(session, self._api_url, self._token, "chat.postMessage",
                                                    {"channel": channel, **message.payload()})
                elif self._url is not None:
                    outcome = await post(session, self._url, message.payload())
                else:
                    StdoutNotifier().publish_now(message)
                    return
                if outcome.delivered or outcome.permanent:
                    if outcome.permanent:
                        log.error("webhook refused a message for good: %s", outcome.detail)
                    return
                if delay is None:
                    log.error("could not deliver a message straight to the webhook (%s); it is lost",
                              outcome.detail)
                    return
                await asyncio.sleep(outcome.retry_after or delay)

    async def aclose(self, within_s: float) -> None:
        if self._direct:
            await asyncio.wait(set(self._direct), timeout=within_s)
        for task in self._direct:
            task.cancel()


async def stage(notifier: Notifier, conn: asyncpg.Connection, queries: Mapping[str, str],
                message: Message) -> AfterCommit:
    """Write ``message`` into the transaction open on ``conn``; returns what to do after COMMIT."""
    payload, after_commit = notifier.in_transaction(message)
    if payload is not None:
        await conn.execute(queries["outbox_add"], payload)
    return after_commit
