"""The Slack control surface: ``/foojob``, buttons and App Home over Socket Mode (slack-bolt).

A thin adapter over :class:`bot.control.Control`, like the HTTP API. Built at start-up from the
settings (never at import time) and closed on shutdown.

Slack wants every command and click acknowledged within 3 seconds, or the user sees
``operation_timeout``. Every handler therefore acks first, with no database work before it (the
usage, a refusal, or an empty ack), and answers the rest through ``response_url``; Bolt runs the
part after ``ack()`` while the ack is already on its way (``process_before_response=False``).
Each Socket Mode payload reaches one connection only, so replicas share the commands; all state is
in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Secret
from bot.control import Control
from bot.errors import AlreadyRunning, BadInput, FoojobError
from bot.notify import Message
from bot.slack import blocks
from bot.slack.commands import MUTATING, USAGE, Command, parse
from bot.timefmt import rfc3339
from jobs import DEFAULT_JOB

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]

# How long the socket may be down before /healthz says 503 (SPEC: over a minute).
DOWN_AFTER_S = 60.0
# A second click on the same button of the same message within this window is a double click.
CLICK_WINDOW = timedelta(seconds=30)


class SlackSurface:
    def __init__(self, *, bot_token: Secret, app_token: Secret, api_url: str, allowed_users: frozenset[str],
                 control: Control, timezone: ZoneInfo, announce_in_channel: bool,
                 down_after_s: float = DOWN_AFTER_S) -> None:
        self._control = control
        self._tz = timezone
        self._allowed = allowed_users
        # With a webhook, pause/resume are announced in the results channel by the core; without
        # one, the announcement goes to the channel the command was typed in.
        self._announce_in_channel = announce_in_channel
        client = AsyncWebClient(token=bot_token.reveal(), base_url=api_url)
        self._app = AsyncApp(client=client, logger=logging.getLogger("bot.slack.bolt"),
                             process_before_response=False)
        self._app_token = app_token
        self._handler: AsyncSocketModeHandler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_connected = time.monotonic()
        self._down_after_s = down_after_s
        self._register()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background: Slack being unreachable must not hold up the service."""
        # The Socket Mode client starts its message loop when built: build it inside the loop.
        self._handler = AsyncSocketModeHandler(self._app, app_token=self._app_token.reveal())
        self._spawn(self._handler.connect_async(), "slack-connect")  # type: ignore[no-untyped-call]
        self._spawn(self._watch(), "slack-watch")

    async def close(self, grace_s: float) -> None:
        """Stop taking commands, let the ones in progress finish (up to ``grace_s``), disconnect."""
        if self._handler is not None:
            await self._handler.client.disconnect()  # type: ignore[no-untyped-call]
        busy = [t for t in self._tasks if t.get_name().startswith("slack-work")]
        if busy:
            await asyncio.wait(busy, timeout=grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._handler is not None:
            await self._handler.close_async()  # type: ignore[no-untyped-call]

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch(self) -> None:
        while True:
            if await self.connected():
                self._last_connected = time.monotonic()
            await asyncio.sleep(min(1.0, self._down_after_s / 4))

    async def connected(self) -> bool:
        # is_connected() is a coroutine: forgetting the await makes a health check always green.
        return self._handler is not None and await self._handler.client.is_connected()

    async def health(self) -> str:
        """``connected``, ``disconnected``, or ``down`` (disconnected for over a minute)."""
        if await self.connected():
            return "connected"
        return "down" if time.monotonic() - self._last_connected > self._down_after_s else "disconnected"

    # -- handlers ---------------------------------------------------------------------------

    def _register(self) -> None:
        self._app.command("/foojob")(self._on_command)
        self._app.action(blocks.RUN_AGAIN_ACTION)(self._on_run_button)
        self._app.action(blocks.PAUSE_ACTION)(self._on_pause_button)
        self._app.action(blocks.RESUME_ACTION)(self._on_resume_button)
        self._app.event("app_home_opened")(self._on_home_opened)

    def _allowed_user(self, user: str) -> bool:
        return not self._allowed or user in self._allowed

    def _refusal(self, user: str, verb: str) -> str:
        return (f"Sorry <@{user}>, you are not allowed to {verb} foojob. Ask an admin to add your user ID "
                f"(`{user}`) to `SLACK_ALLOWED_USERS`. Nothing was changed.")

    async def _on_command(self, ack: Callable[..., Awaitable[None]], command: dict[str, Any],
                          respond: Respond) -> None:
        user = command.get("user_id", "")
        try:
            cmd = parse(command.get("text", ""))
        except BadInput as exc:
            await ack(response_type="ephemeral", text=f":warning: {exc}\n\n{USAGE}")
            return
        if cmd.verb == "help":
            await ack(response_type="ephemeral", text=USAGE)
            return
        if cmd.verb in MUTATING and not self._allowed_user(user):
            await ack(response_type="ephemeral", text=self._refusal(user, cmd.verb))
            log.warning("refused /foojob %s from %s (not in SLACK_ALLOWED_USERS)", cmd.verb, user)
            return
        if cmd.verb == "run-now":
            await ack(response_type="ephemeral", text=f":hourglass_flowing_sand: Running {DEFAULT_JOB}…")
        else:
            await ack()
        await self._work(self._command(cmd, user, respond), respond)

    async def _work(self, coro: Awaitable[None], respond: Respond) -> None:
        """Run the slow part as a tracked task (shutdown waits for it); report any failure."""
        async def guarded() -> None:
            try:
                await coro
            except FoojobError as exc:
                await _reply(respond, blocks.text_message(f":warning: {exc}"))
            except Exception:
                log.exception("Slack request failed")
                await _reply(respond, blocks.text_message(":warning: Something went wrong; see foojob's log."))

        await self._spawn(guarded(), "slack-work")

    async def _command(self, cmd: Command, user: str, respond: Respond) -> None:
        job = DEFAULT_JOB
        if cmd.verb == "run-now":
            await self._run_now(job, user, respond)
        elif cmd.verb == "pause":
            await self._pause(job, user, respond, cmd.duration, cmd.reason)
        elif cmd.verb == "resume":
            await self._resume(job, user, respond)
        elif cmd.verb == "status":
            await _reply(respond, blocks.status_message(await self._control.status(job), self._tz))
        elif cmd.verb == "history":
            runs = await self._control.history(job, cmd.limit)
            await _reply(respond, blocks.history_message(job, runs, self._tz))

    async def _run_now(self, job: str, user: str, respond: Respond) -> None:
        try:
            run = await self._control.run_now(job, by=user)
        except AlreadyRunning:
            await _reply(respond, blocks.text_message(f":hourglass: {job} is already running; try again when it ends."))
            return
        await _reply(respond, blocks.run_result_message(run, self._tz))

    async def _pause(self, job: str, user: str, respond: Respond, duration: timedelta | None,
                     reason: str | None) -> None:
        state = await self._control.pause(job, by=user, duration=duration, reason=reason)
        until = f" until {rfc3339(state.resume_at, self._tz)}" if state.resume_at else " until someone resumes it"
        await _reply(respond, blocks.text_message(f":double_vertical_bar: Paused {job}{until}."))
        if self._announce_in_channel:
            await _reply(respond, blocks.paused_message(state, self._tz), in_channel=True)

    async def _resume(self, job: str, user: str, respond: Respond) -> None:
        changed = await self._control.resume(job, by=user)
        await _reply(respond, blocks.text_message(
            f":arrow_forward: Resumed {job}." if changed else f"{job} was not paused; nothing changed."))
        if changed and self._announce_in_channel:
            await _reply(respond, blocks.resumed_message(job, user, automatic=False), in_channel=True)

    async def _button(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any], respond: Respond,
                      verb: str) -> tuple[str, str] | None:
        """Ack a click; return (job, user) if it should go on, after telling the user why not."""
        await ack()
        user = body.get("user", {}).get("id", "")
        action = (body.get("actions") or [{}])[0]
        job = action.get("value") or DEFAULT_JOB
        if not self._allowed_user(user):
            await _reply(respond, blocks.text_message(self._refusal(user, verb)))
            return None
        # One click per button per message per window, across replicas: a double click runs once.
        container = body.get("container", {})
        key = f"slack:{container.get('channel_id')}:{container.get('message_ts')}:{action.get('action_id')}"
        if not await self._control.first_request(key, CLICK_WINDOW):
            await _reply(respond, blocks.text_message("That click was already taken care of."))
            return None
        return job, user

    async def _on_run_button(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                             respond: Respond) -> None:
        async def work() -> None:
            if (target := await self._button(ack, body, respond, "run-now")) is not None:
                await self._run_now(*target, respond)

        await self._work(work(), respond)

    async def _on_pause_button(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                               respond: Respond) -> None:
        async def work() -> None:
            if (target := await self._button(ack, body, respond, "pause")) is not None:
                await self._pause(*target, respond, None, None)

        await self._work(work(), respond)

    async def _on_resume_button(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                                respond: Respond) -> None:
        async def work() -> None:
            if (target := await self._button(ack, body, respond, "resume")) is not None:
                await self._resume(*target, respond)

        await self._work(work(), respond)

    async def _on_home_opened(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "home":
            return
        statuses = [await self._control.status(job) for job in self._control.jobs]
        runs = await self._control.history(None, 10)
        await client.views_publish(user_id=event["user"], view=blocks.home_view(statuses, runs, self._tz))


async def _reply(respond: Respond, message: Message, *, in_channel: bool = False) -> None:
    await respond(text=message.text, blocks=message.blocks,
                  response_type="in_channel" if in_channel else "ephemeral", replace_original=False)
