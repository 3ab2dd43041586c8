"""Delivers the outbox to Slack — the webhook, or channels through the Web API — in order, at
Slack's pace, with retries, on any replica.

Every replica runs a :class:`Dispatcher`. Only the oldest pending message of a destination (the
webhook, or a channel) may be delivered, and it is locked (``FOR UPDATE SKIP LOCKED``) for the
length of the POST, so replicas never deliver one message twice, and order holds per destination;
a destination that waits (``Retry-After``, a retry's backoff) holds up only its own messages.
The lock is held in a transaction that marks the message delivered when Slack says so: a crash
before that COMMIT leaves the message pending for the next dispatcher — delivered once normally,
at least once across a crash. (A failed attempt whose answer was lost is another matter: through
the Web API, the next attempt first looks for the post in the channel, below.)

Slack's rules for incoming webhooks: about one message a second (short bursts allowed), 429 with
``Retry-After`` when faster; 400 ``invalid_payload``, 403 ``action_prohibited``, 404
``channel_not_found`` and 410 ``channel_is_archived`` (like any 4xx but 408 and 429) will never
succeed, so such a message is set aside (``failed_at``, ``last_error``) with an error in the log,
and the queue moves on. Any other failure (5xx, timeout, connection refused) is retried with
exponential backoff and jitter, for as long as it takes. A POST that times out after Slack took
it, or whose "delivered" mark cannot be written, is sent again: at least once, never lost.

Through the Web API (``SLACK_CHANNEL``, a job's ``channel``) a message is a ``chat.postMessage``,
and a run's card is edited in place (``chat.update``) and replied to in its thread: the route is
data on the row (``channel``, ``method``, ``card``), and the ``ts`` of a delivered post is kept
with it for the edit and the replies. An edit or a reply always goes after the post it needs
(the queue's order); one whose card was never posted (set aside for good) is posted as a new
message, and so is an edit Slack will not make (``message_not_found``, ``edit_window_closed``):
a result is never lost for want of its card. A post is not idempotent, so each carries its outbox
id as message metadata, and a post tried before reads the channel back first: a card whose
answer was lost is not posted twice (a run's card is one message whatever the retries). Slack's
answers that will never change (``not_in_channel``, ``channel_not_found``, ``is_archived``,
``invalid_blocks``…) set the message aside with the reason, one clear log line a minute per
channel, and ``/healthz`` says so.

A backlog never goes stale: when more than ``FOLD_DEPTH`` messages wait, or the oldest has waited
``FOLD_AGE_S``, the plain successes of the head's job that wait before its next other message
fold into one line ("✅ nightly-rollup: 37 runs succeeded, 12:00–12:09"); a longer run's card
folds with its edit when both wait. Failures, alerts, announcements and the edits of cards already
in the channel never fold, and order is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg

from bot.config import Secret
from bot.db import acquire
from bot.errors import DatabaseUnavailable
from bot.messages import folded_message

log = logging.getLogger(__name__)

def permanent(status: int) -> bool:
    """A client error that no retry will fix: Slack's 400/403/404/410, and the rest of 4xx (401,
    413…). 408 and 429 are worth another try."""
    return 400 <= status < 500 and status not in (408, 429)


@dataclass(frozen=True)
class Outcome:
    delivered: bool = False
    permanent: bool = False
    retry_after: float | None = None
    detail: str = ""
    ts: str | None = None  # a post's, through the Web API
    error: str = ""  # the Web API's error code, when it answered one


# The Web API's answers worth another try (any other ok:false is an answer about the message).
RETRYABLE_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                              "unknown_error"})
# A reply whose thread Slack will not take: posted as a message of its own instead.
THREAD_REFUSED = frozenset({"thread_not_found", "cannot_reply_to_message", "message_not_found"})
# An edit Slack will not make: the result is posted as a new message instead.
EDIT_REFUSED = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
# A channel the bot cannot post in: said on /healthz, and in one log line a minute.
CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived"})
UTC_ZONE = ZoneInfo("UTC")
# The metadata every Web API post carries (its outbox id), by which a retried post finds itself.
METADATA_EVENT = "foojob_message"
# How many pages (of 200 messages) of a channel's history a retried post reads looking for itself.
LOOKUP_PAGES = 5
FOLD_DEPTH = 20
FOLD_AGE_S = 60.0


# Slack's webhooks ask for seconds, a minute at most in practice. A larger Retry-After (a proxy's,
# or a bogus 9999) would hold every message for hours; we wait at most this long, then try again:
# if Slack still wants us to wait it says so again, and one request a minute costs it nothing.
MAX_RETRY_AFTER_S = 60.0


def _retry_after(value: str | None) -> float:
    try:
        asked = float(value or "")
    except ValueError:
        return 30.0  # Slack always sends seconds; be patient if it does not
    if asked > MAX_RETRY_AFTER_S:
        log.warning("Slack asked to wait %.0f s (Retry-After); waiting %.0f s, then asking again",
                    asked, MAX_RETRY_AFTER_S)
    return max(0.0, min(asked, MAX_RETRY_AFTER_S))


async def post(session: aiohttp.ClientSession, url: Secret, payload: dict[str, Any]) -> Outcome:
    """POST one message; never raises, never puts the URL (a secret) in ``detail``."""
    try:
        async with session.post(url.reveal(), json=payload) as resp:
            body = (await resp.text())[:200]
            if resp.status < 300:
                return Outcome(delivered=True)
            detail = f"HTTP {resp.status} {body}".strip()
            if resp.status == 429:
                return Outcome(retry_after=_retry_after(resp.headers.get("Retry-After")), detail=detail)
            return Outcome(permanent=permanent(resp.status), detail=detail)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Not str(exc): aiohttp puts the URL in its messages.
        return Outcome(detail=type(exc).__name__)


async def post_to_channel(session: aiohttp.ClientSession, api_url: str, token: Secret, method: str,
                          body: dict[str, Any]) -> Outcome:
    """One Web API call (``chat.postMessage``, ``chat.update``); never raises, never shows the token."""
    try:
        async with session.post(f"{api_url}{method}", json=body,
                                headers={"Authorization": f"Bearer {token.reveal()}"}) as resp:
            if resp.status == 429:
                return Outcome(retry_after=_retry_after(resp.headers.get("Retry-After")), detail="HTTP 429 ratelimited")
            if resp.status >= 300:
                return Outcome(permanent=permanent(resp.status), detail=f"HTTP {resp.status}")
            answer = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Outcome(detail=type(exc).__name__)
    if not isinstance(answer, dict):
        return Outcome(detail="not a JSON object")
    if answer.get("ok"):
        return Outcome(delivered=True, ts=str(answer.get("ts") or "") or None)
    error = str(answer.get("error") or "unknown_error")[:100]
    if error == "ratelimited":
        return Outcome(retry_after=30.0, detail=f"{method}: {error}", error=error)
    # Slack's errors are answers about the request, which a retry does not change, but for these.
    return Outcome(permanent=error not in RETRYABLE_ERRORS, detail=f"{method}: {error}", error=error)


# What deliver_one answers when there is nothing to do until something new comes: the queue is
# empty, or another replica holds its head (and goes on to the rest).
QUEUE_EMPTY = math.inf
# After the database could not be reached: try again this soon.
RETRY_S = 2.0
# What deliver_one answers when messages wait but another replica holds the head: look again
# HEAD_ELSEWHERE_S later (or when woken), in case a message came after that replica's last look.
HEAD_ELSEWHERE = -1.0
HEAD_ELSEWHERE_S = 2.0


class Dispatcher:
    """Delivers the outbox: woken when this process commits a message (``wake``), and by the
    heartbeat when a message waits that a replica left behind (it died before delivering it); it
    does not poll. ``idle_poll_s``: look at the queue this often too (for tests without either)."""

    def __init__(self, pool: asyncpg.Pool, queries: Mapping[str, str], url: Secret | None, *,
                 bot_token: Secret | None = None, api_url: str = "https://slack.com/api/",
                 timezone: ZoneInfo = UTC_ZONE,
                 rate_per_s: float = 1.0, burst: float = 3.0, timeout_s: float = 5.0,
                 backoff_base_s: float = 0.5, backoff_cap_s: float = 15.0, idle_poll_s: float | None = None) -> None:
        self._pool = pool
        self._q = queries
        self._url = url
        self._token, self._api_url, self._tz = bot_token, api_url, timezone
        self._told: dict[str, float] = {}  # channel -> when its refusal was last logged
        self._rate, self._burst = rate_per_s, burst
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._base, self._cap = backoff_base_s, backoff_cap_s
        self._idle = idle_poll_s
        self._wake = asyncio.Event()  # something new may be in the queue
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    def wake(self) -> None:
        """A message was added: look now (it may be for a destination that does not wait, while the
        one the dispatcher waits for holds only its own)."""
        self._wake.set()

    async def stop(self, within_s: float) -> None:
        """Finish the delivery in progress (if any), then stop; what is pending stays for later."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), within_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def drain(self, within_s: float) -> None:
        """Deliver what is pending, for up to ``within_s`` seconds (a CLI command before it exits)."""
        self._session = self._session or aiohttp.ClientSession(timeout=self._timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        try:
            while loop.time() < deadline:
                wait = await self.deliver_one()
                if wait in (QUEUE_EMPTY, HEAD_ELSEWHERE):  # nothing pending, or another process is on it
                    return
                if wait is not None:
                    await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))
        finally:
            await self._session.close()

    async def _run(self) -> None:
        outage = False
        while not self._stopping:
            self._wake.clear()  # before looking: a message committed from now on wakes the next wait
            try:
                wait = await self.deliver_one()
                if outage:
                    log.info("outbox: database reachable again")
                    outage = False
            except DatabaseUnavailable as exc:
                if not outage:
                    log.warning("outbox: %s; messages wait in the database", exc)
                    outage = True
                wait = RETRY_S
            except Exception:
                log.exception("outbox: unexpected error; trying again shortly")
                wait = RETRY_S
            if wait is None or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                if wait == QUEUE_EMPTY:
                    await asyncio.wait_for(self._wake.wait(), self._idle)
                elif wait == HEAD_ELSEWHERE:
                    await asyncio.wait_for(self._wake.wait(), HEAD_ELSEWHERE_S)
                else:  # (stop() wakes it too)
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def deliver_one(self) -> float | None:
        """Try the head of the queue. None: go again at once; QUEUE_EMPTY: nothing to do until a
        message comes; HEAD_ELSEWHERE: another replica is delivering; a number: wait that long
        (Slack's pace, a retry)."""
        assert self._session is not None
        async with acquire(self._pool) as conn, conn.transaction():
            head = await conn.fetchrow(self._q["outbox_head"])
            if head["id"] is None:
                # Empty; or another replica has the head, and goes on to the rest — unless a message
                # came after its last look: look again shortly while anything waits.
                return HEAD_ELSEWHERE if head["pending"] else QUEUE_EMPTY
            if head["wait_s"] > 0:  # the head due first waits for its retry: so does every other
                return float(head["wait_s"])
            if await conn.fetchval(self._q["outbox_take_token"], self._rate, self._burst,
                                   head["channel"] or "webhook") is None:
                # Its destination's turn comes in a moment; another destination's head may go now.
                await conn.execute(self._q["outbox_pace_wait"], head["id"], 1.0 / self._rate)
                return None
            # A post tried before looks for itself first: found, it is delivered as it was (a fold
            # now would promise what the channel never shows).
            outcome = await self._looked_for(head)
            if outcome is None:
                payload = await self._folded(conn, head) or head["payload"]
                outcome = await self._send(conn, head, payload)
            if outcome.delivered:
                # The mark says whether another message waits: none, and no look at an empty queue.
                more = await conn.fetchval(self._q["outbox_delivered"], head["id"], outcome.ts)
                return None if more else QUEUE_EMPTY
            if outcome.permanent:
                self._refused(head, outcome)
                await conn.execute(self._q["outbox_failed"], head["id"], outcome.detail)
                return None
            if outcome.retry_after is not None:
                delay, attempt = outcome.retry_after, 0  # Slack asked us to slow down: not a failure
                log.warning("outbox: rate limited by Slack; message %d waits %.0f s (Retry-After)",
                            head["id"], delay)
            else:
                ceiling = min(self._cap, self._base * 2 ** min(head["attempts"], 20))
                delay, attempt = ceiling / 2 + random.uniform(0, ceiling / 2), 1
                log.warning("outbox: delivery of message %d failed (%s); retry %d in %.1f s", head["id"],
                            outcome.detail, head["attempts"] + 1, delay)
            await conn.execute(self._q["outbox_retry"], head["id"], delay, outcome.detail, attempt)
            return None

    async def _send(self, conn: asyncpg.Connection, head: Mapping[str, Any], payload: dict[str, Any]) -> Outcome:
        """Deliver one message by its route: the webhook, or the Web API (a post, the card's edit,
        a reply in its thread)."""
        assert self._session is not None
        channel = head["channel"]
        if channel is None:
            if self._url is None:
                return Outcome(permanent=True, detail="no SLACK_WEBHOOK_URL for a message without a channel")
            return await post(self._session, self._url, payload)
        if self._token is None:
            return Outcome(permanent=True, detail="no SLACK_BOT_TOKEN to post in a channel")
        body: dict[str, Any] = {"channel": channel, **payload}
        api = "chat.postMessage"
        if head["method"] in ("update", "reply"):
            ts = await conn.fetchval(self._q["outbox_card_ts"], head["card"])
            if ts is not None and head["method"] == "update":
                api, body["ts"] = "chat.update", ts
            elif ts is not None:
                body["thread_ts"] = ts
            # (No ts: the card was never posted, set aside for good: this is a new message.)
        if api == "chat.postMessage":
            # A post is not idempotent: it carries its outbox id, and a reply tried before (whose
            # answer may have been lost after Slack took it) first looks for itself in the thread
            # (a post: in _looked_for, before any fold).
            body["metadata"] = _metadata(head["id"])
            if head["attempts"] > 0 and "thread_ts" in body:
                found = await self._already_posted(head, channel, body["thread_ts"])
                if found is not None:
                    return found
        outcome = await post_to_channel(self._session, self._api_url, self._token, api, body)
        refused = EDIT_REFUSED if api == "chat.update" else THREAD_REFUSED if "thread_ts" in body else frozenset()
        if outcome.error in refused:
            log.warning("outbox: Slack would not take message %d on its card (%s): posting it as a message of its "
                        "own", head["id"], outcome.error)
            outcome = await post_to_channel(self._session, self._api_url, self._token, "chat.postMessage",
                                            {"channel": channel, **payload, "metadata": _metadata(head["id"])})
        return outcome

    async def _looked_for(self, head: Mapping[str, Any]) -> Outcome | None:
        """A channel's post tried before (its answer may have been lost after Slack took it): what
        reading the channel back says — delivered (found), or wait (Slack could not be asked now).
        None: not found, or not such a post: deliver it."""
        if head["channel"] is None or head["method"] != "post" or head["attempts"] == 0 or self._token is None:
            return None
        return await self._already_posted(head, head["channel"], None)

    async def _already_posted(self, head: Mapping[str, Any], channel: str, thread_ts: str | None) -> Outcome | None:
        """Whether an earlier attempt of this post reached the channel (its answer lost: a timeout,
        a dropped connection, a 5xx after Slack took it): the message carrying its outbox id in its
        metadata, read back with ``conversations.history`` (``conversations.replies`` in a thread),
        ``include_all_metadata`` (api.slack.com/methods/conversations.history). A delivered
        Outcome with its ts if so; a retry Outcome if Slack could not be asked now (nothing is
        posted blind while a look is merely delayed); None: not there, post it. When the look is
        refused for good (the app lacks ``channels:history``), the message is posted again: at
        least once, never lost; one log line a minute says why."""
        assert self._session is not None and self._token is not None
        method = "conversations.replies" if thread_ts else "conversations.history"
        # (created_at is the database's clock, a message's ts Slack's: a minute's margin for skew.)
        params = {"channel": channel, "oldest": f"{head['created_at'].timestamp() - 60:.6f}",
                  "include_all_metadata": "true", "limit": "200", **({"ts": thread_ts} if thread_ts else {})}
        for _page in range(LOOKUP_PAGES):
            try:
                async with self._session.get(f"{self._api_url}{method}", params=params,
                                             headers={"Authorization": f"Bearer {self._token.reveal()}"}) as resp:
                    if resp.status == 429:
                        return Outcome(retry_after=_retry_after(resp.headers.get("Retry-After")),
                                       detail=f"HTTP 429 ratelimited ({method})")
                    if resp.status >= 300:
                        return Outcome(detail=f"HTTP {resp.status} ({method})")
                    answer = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return Outcome(detail=f"{type(exc).__name__} ({method})")
            if not isinstance(answer, dict):
                return Outcome(detail=f"{method}: not a JSON object")
            if not answer.get("ok"):
                error = str(answer.get("error") or "unknown_error")[:100]
                if error in RETRYABLE_ERRORS or error == "ratelimited":
                    return Outcome(detail=f"{method}: {error}")
                self._cannot_look(channel, method, error)
                return None
            for message in answer.get("messages") or []:
                metadata = message.get("metadata") if isinstance(message, dict) else None
                if (isinstance(metadata, dict) and metadata.get("event_type") == METADATA_EVENT
                        and isinstance(metadata.get("event_payload"), dict)
                        and str(metadata["event_payload"].get("outbox_id")) == str(head["id"])):
                    log.info("outbox: message %d was already in channel %s (an earlier attempt's answer was lost): "
                             "not posted twice", head["id"], channel)
                    return Outcome(delivered=True, ts=str(message.get("ts") or "") or None)
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
            params["cursor"] = cursor
        return None

    def _cannot_look(self, channel: str, method: str, error: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._told.get(f"look:{channel}", -math.inf) >= 60.0:
            self._told[f"look:{channel}"] = now
            fix = ("invite the bot to the channel (/invite @foojob): it may post where it is not a member, but "
                   "reads only where it is" if error in CHANNEL_ERRORS else
                   "give the app channels:history and groups:history")
            log.warning("outbox: cannot read channel %s back (%s: %s) to see whether a post whose answer was lost "
                        "reached it: posting again, so it may show twice (%s)", channel, method, error, fix)

    def _refused(self, head: Mapping[str, Any], outcome: Outcome) -> None:
        channel = head["channel"]
        if outcome.error in CHANNEL_ERRORS:
            now = asyncio.get_running_loop().time()
            if now - self._told.get(channel, -math.inf) >= 60.0:
                self._told[channel] = now
                log.error("outbox: foojob cannot post in channel %s (%s): invite the bot (/invite @foojob), or check "
                          "SLACK_CHANNEL and the job's channel; messages for it are set aside with the reason",
                          channel, outcome.error)
            return
        log.error("outbox: Slack refused message %d for good (%s); it is set aside", head["id"], outcome.detail)

    async def _folded(self, conn: asyncpg.Connection, head: Mapping[str, Any]) -> dict[str, Any] | None:
        """A backlog's head, when it is a run's success: it and the job's successes waiting after it
        (before its next message that cannot fold) as one line (:func:`fold_plan`). None: nothing
        to fold."""
        if head["kind"] not in ("success", "running") or head["method"] != "post" or head["job"] is None:
            return None
        backlog = await conn.fetchrow(self._q["outbox_backlog"])
        if backlog["depth"] <= FOLD_DEPTH and float(backlog["oldest_s"]) <= FOLD_AGE_S:
            return None
        rows = await conn.fetch(self._q["outbox_job_waiting"], head["id"], head["job"])
        before = await conn.fetchrow(self._q["outbox_folded_before"], head["id"])
        plan = fold_plan(rows, int(before["runs"]))
        if plan is None:
            return None
        await conn.execute(self._q["outbox_fold"], head["id"], list(plan.fold), list(plan.replies))
        if plan.head_edit is not None:  # a long run's card alone, its edit folded into it: its result, once
            payload: dict[str, Any] = await conn.fetchval(self._q["outbox_payload"], plan.head_edit)
        else:
            until = max(t for t in (plan.until, before["until"]) if t is not None)
            payload = folded_message(head["job"], plan.runs, head["created_at"], until, self._tz).payload()
            log.info("outbox: %d waiting successes of %s folded into one message", plan.runs, head["job"])
        await conn.execute(self._q["outbox_set_payload"], head["id"], payload)
        return payload


def _metadata(outbox_id: int) -> dict[str, Any]:
    """What a Web API post carries so that a retry can find it in the channel."""
    return {"event_type": METADATA_EVENT, "event_payload": {"outbox_id": outbox_id}}


@dataclass(frozen=True)
class FoldPlan:
    fold: tuple[int, ...]  # rows the head's line stands for: posts of runs, and long runs' edits
    replies: tuple[int, ...]  # thread replies of the folded runs (a folded line has no thread)
    runs: int  # runs the line covers, with the head's and earlier attempts' folds
    until: datetime | None  # the newest folded row
    head_edit: int | None  # the head is a long run's card folding alone: its edit's row, posted instead


def fold_plan(rows: list[Mapping[str, Any]], folded_before: int) -> FoldPlan | None:
    """What of a job's waiting messages folds into the head (``rows[0]``; ``rows``: that job's
    waiting rows in order). A run's success folds: its post (``kind`` success), or a long run's
    card (``kind`` running) together with its edit into a success — only if that edit comes before
    the fold stops, since a card left behind must be posted to be edited. The fold stops at the
    first message that is neither (a failure, an alert, an announcement, a card whose run goes on,
    an edit of a card already in the channel): nothing passes it, so order is kept. None: nothing
    to fold."""
    head, rest = rows[0], rows[1:]
    edits = {r["card"]: r["id"] for r in rest if r["method"] == "update" and r["kind"] == "success"}

    def plain(r: Mapping[str, Any]) -> bool:
        return bool(r["method"] == "post" and r["kind"] == "success")

    def long_run(r: Mapping[str, Any]) -> bool:
        return bool(r["method"] == "post" and r["kind"] == "running" and r["card"] in edits)

    if not (plain(head) or long_run(head) or folded_before):
        return None
    stop = math.inf
    while True:  # the stop only moves earlier: this ends
        fold: list[Mapping[str, Any]] = []
        cards = {head["card"]} if long_run(head) else set()
        reached = stop
        for r in rest:
            if r["id"] >= stop:
                break
            if r["method"] == "reply":
                continue
            if plain(r) or long_run(r):
                fold.append(r)
                cards.add(r["card"])
            elif r["method"] == "update" and r["kind"] == "success" and r["card"] in cards:
                fold.append(r)
            else:
                reached = r["id"]
                break
        left_behind = [r["id"] for r in fold if long_run(r) and edits[r["card"]] >= reached]
        if long_run(head) and edits[head["card"]] >= reached:
            return None  # the head's own edit comes after the stop: it is posted as the card it is
        if not left_behind:
            break
        stop = min(left_behind)
    posts = [r for r in fold if r["method"] == "post"]
    runs = 1 + len(posts) + folded_before
    if runs < 2:
        if not long_run(head):
            return None
        return FoldPlan(fold=(edits[head["card"]],), replies=(), runs=1, until=None, head_edit=edits[head["card"]])
    folded_cards = {r["card"] for r in posts} | {head["card"]}
    replies = tuple(r["id"] for r in rest if r["method"] == "reply" and r["card"] in folded_cards)
    until = max((r["created_at"] for r in fold), default=None)
    return FoldPlan(fold=tuple(r["id"] for r in fold), replies=replies, runs=runs, until=until, head_edit=None)
