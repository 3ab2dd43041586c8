"""The Slack control surface: ``/foojob``, buttons and App Home over Socket Mode (slack-bolt).

A thin adapter over :class:`bot.control.Control`, like the HTTP API. Built at start-up from the
settings (never at import time) and closed on shutdown.

Slack wants every command and click acknowledged within 3 seconds, or the user sees
``operation_timeout``. Every handler therefore acks first, with no database work before it (the
usage, a refusal, or an empty ack), starts the rest as a task of its own and returns, so the ack
leaves at once (``process_before_response=True``); the rest answers through ``response_url``.
Each Socket Mode payload reaches one connection only, so replicas share the commands; all state is
in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.config import Secret
from bot.control import Control
from bot.errors import AlreadyRunning, BadInput, ConfigError, FoojobError
from bot.notify import Message
from bot.slack import blocks, modals
from bot.slack.commands import MUTATING, SCHEDULE_USAGE, USAGE, Command, parse
from bot.slack.roles import NEEDS, Role, Roles
from bot.timefmt import human_time

log = logging.getLogger(__name__)



class Reply(Protocol):
    async def __call__(self, message: Message, *, in_channel: bool = False, replace: bool = False) -> None: ...


async def _nowhere(message: Message, *, in_channel: bool = False, replace: bool = False) -> None:
    """Where a modal's work answers a failure: its log line (a closed modal has no response_url)."""
    log.warning("a modal's change did not go through: %s", message.text)

# How long the socket may be down before /healthz says 503 (SPEC: over a minute).
DOWN_AFTER_S = 60.0
T = TypeVar("T")
# What a modal's submission may take before its ack (a user group read, a database read): Slack
# waits 3 s for the ack.
MODAL_STEP_S = 2.0
# A second click on the same button of the same message within this window is a double click.
CLICK_WINDOW = timedelta(seconds=30)
WORK_AT_ONCE = 4


# What Slack answers for a token that will never work (as opposed to Slack being unreachable).
REFUSED = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})


async def check_tokens(bot_token: Secret, app_token: Secret, api_url: str, timeout_s: float = 5.0) -> bool:
    """Ask Slack whether it takes both tokens, before the service goes on: the bot token with
    ``auth.test``, the app token with ``apps.connections.open`` (its answer, a single-use socket
    URL, is left to expire: slack_sdk's own connection retries a refused token for ever, logging a
    traceback each time, so the first connection cannot be the check).

    A token Slack refuses raises ConfigError naming its variable (start-up stops, exit 2). Slack not
    reachable right now returns False after one warning line: the connection retries by itself.
    """
    quiet_slack_sdk()
    checks: tuple[tuple[str, Callable[[], Awaitable[Any]]], ...] = (
        ("SLACK_BOT_TOKEN", lambda: AsyncWebClient(token=bot_token.reveal(), base_url=api_url,
                                                   timeout=int(timeout_s)).auth_test()),
        ("SLACK_APP_TOKEN", lambda: AsyncWebClient(base_url=api_url, timeout=int(timeout_s)).apps_connections_open(
            app_token=app_token.reveal())),
    )
    for variable, call in checks:
        try:
            await asyncio.wait_for(call(), timeout_s + 1)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error in REFUSED:
                raise ConfigError(variable, f"Slack refused this token ({error})") from None
            log.warning("Slack answered %r when asked about %s; going on", error, variable)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("Slack cannot be reached at %s (%s): the tokens are not checked yet; connecting in the "
                        "background", api_url, type(exc).__name__)
            return False
    return True


class _OneLineSlackLogs(logging.Filter):
    """slack_sdk logs every failed connection attempt at ERROR with a traceback, and each of its
    retries at INFO: Slack unreachable for an hour filled the log. One warning line an attempt,
    naming the error, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("A retry handler found"):
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{message} ({type(record.exc_info[1]).__name__})", None
            record.exc_info, record.exc_text = None, None
        if record.levelno >= logging.ERROR and "connect" in message.lower():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_slack_sdk() -> None:
    one_line = _OneLineSlackLogs()
    for name in ("bot.slack.bolt", "slack_sdk.web.async_base_client", "slack_sdk.socket_mode.aiohttp"):
        logging.getLogger(name).addFilter(one_line)


class SlackSurface:
    def __init__(self, *, bot_token: Secret, app_token: Secret, api_url: str, allowed_users: frozenset[str],
                 schedulers: frozenset[str] = frozenset(),
                 control: Control, timezone: ZoneInfo, announce_in_channel: bool,
                 down_after_s: float = DOWN_AFTER_S) -> None:
        self._control = control
        self._tz = timezone
        # With a webhook, pause/resume are announced in the results channel by the core; without
        # one, the announcement goes to the channel the command was typed in.
        self._announce_in_channel = announce_in_channel
        # process_before_response=True: Bolt sends the ack as soon as the listener returns, and
        # every listener here returns right after ack(), leaving the slow part to a task of its
        # own. (With False, Bolt polls for the ack every 10 ms: 10-20 ms per ack for nothing.)
        # Over Socket Mode there are no HTTP requests to verify, no SSL checks or URL verification,
        # no messages of our own to ignore, no functions: those middlewares only cost time per ack.
        self._app = AsyncApp(token=bot_token.reveal(), logger=logging.getLogger("bot.slack.bolt"),
                             process_before_response=True, request_verification_enabled=False,
                             ssl_check_enabled=False, url_verification_enabled=False,
                             ignoring_self_events_enabled=False, attaching_function_token_enabled=False)
        # Bolt builds its Web API client from the token; point it at SLACK_API_URL (GovSlack, tests).
        # (Handing Bolt a client instead makes it warn that the token it reads from the environment
        # is unused.)
        self._app.client.base_url = api_url
        self._roles = Roles(allowed_users, schedulers,
                            lambda group: self._app.client.usergroups_users_list(usergroup=group))
        self._app_token = app_token
        self._handler: AsyncSocketModeHandler | None = None
        self._http: aiohttp.ClientSession | None = None
        self._work_slots = asyncio.Semaphore(WORK_AT_ONCE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_connected = time.monotonic()
        self._down_after_s = down_after_s
        self._register()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background: Slack being unreachable must not hold up the service."""
        # The Socket Mode client starts its message loop when built: build it inside the loop.
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._handler = AsyncSocketModeHandler(self._app, app_token=self._app_token.reveal())
        self._spawn(self._handler.connect_async(), "slack-connect")  # type: ignore[no-untyped-call]
        self._spawn(self._watch(), "slack-watch")

    async def close(self, grace_s: float) -> None:
        """Stop taking commands, let the ones in progress finish (up to ``grace_s``), disconnect."""
        if self._handler is not None:
            # close(), not disconnect(): a disconnected client would reconnect by itself (its monitor
            # sees a closed session) and take new commands during the shutdown. Replies in progress
            # go through response_url, which does not need the socket.
            await self._handler.close_async()  # type: ignore[no-untyped-call]
        busy = [t for t in self._tasks if t.get_name().startswith("slack-work")]
        if busy:
            await asyncio.wait(busy, timeout=grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

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
        self._app.action(messages.RUN_AGAIN_ACTION)(self._on_click("run-now"))
        # The status card's Pause opens a modal (duration and reason); Pause 1h stays one click.
        self._app.action(messages.PAUSE_ACTION)(self._on_open_modal("operator"))
        self._app.action(modals.CHANGE_SCHEDULE_ACTION)(self._on_open_modal("scheduler"))
        self._app.action(modals.CRON_TYPED_ACTION)(self._on_schedule_typed)
        self._app.action(modals.ZONE_TYPED_ACTION)(self._on_schedule_typed)
        self._app.view(modals.PAUSE_MODAL)(self._on_pause_submitted)
        self._app.view(modals.SCHEDULE_MODAL)(self._on_schedule_submitted)
        # On failure and alert messages: as `/foojob pause 1h`, while someone looks.
        self._app.action(messages.PAUSE_1H_ACTION)(self._on_click("pause for an hour"))
        self._app.action(messages.RESUME_ACTION)(self._on_click("resume"))
        self._app.action(blocks.APPLY_SCHEDULE_ACTION)(self._on_apply)
        self._app.action(blocks.CANCEL_SCHEDULE_ACTION)(self._on_cancel)
        self._app.event("app_home_opened")(self._on_home_opened)
        self._app.event("subteam_members_changed")(self._on_members_changed)

    async def _on_members_changed(self, event: dict[str, Any]) -> None:
        """A user group's members changed: read them again at the next check (a removed member loses
        the right at once) — here, and on every other replica (Slack tells one connection only)."""
        group = event.get("subteam_id")
        self._roles.forget(group)
        try:
            await self._control.group_changed(str(group or ""))
        except FoojobError as exc:
            log.warning("could not tell the other replicas that user group %s changed (%s): they read it again "
                        "within 5 minutes", group, exc)

    def forget_group(self, group: str) -> None:
        """Another replica heard that ``group`` changed ("": every group)."""
        self._roles.forget(group or None)

    async def _on_command(self, ack: Callable[..., Awaitable[None]], command: dict[str, Any]) -> None:
        user = command.get("user_id", "")
        jobs = self._control.jobs
        try:
            cmd = parse(command.get("text", ""), jobs)
        except BadInput as exc:
            # A bad schedule gets the error and the schedule verbs' usage, not the whole list.
            usage = SCHEDULE_USAGE if command.get("text", "").split()[:1] == ["schedule"] else USAGE
            await ack(response_type="ephemeral", text=f":warning: {messages.escape(str(exc))}\n\n{usage}")
            return
        if cmd.verb == "help":
            await ack(response_type="ephemeral", text=USAGE)
            return
        # With one job it may be left out; with several, a verb that changes something names one.
        job = cmd.job or (jobs[0] if len(jobs) == 1 else None)
        if job is None and cmd.verb in MUTATING:
            await ack(response_type="ephemeral", text=blocks.which_job(cmd.verb, jobs))
            return
        role = NEEDS.get(cmd.verb)
        verdict = self._roles.decided_at_once(user, role) if role else None
        if verdict is not None and not verdict.allowed:
            await ack(response_type="ephemeral", text=verdict.why)
            log.warning("refused /foojob %s from %s (not one of the %ss)", cmd.verb, user, role)
            return
        if cmd.verb == "run-now" and verdict is not None:
            await ack(response_type="ephemeral", text=f":hourglass_flowing_sand: Running {job}…")
        else:
            await ack()  # a user group is read after the ack: Slack waits 3 s for it, at most
        reply = self._responder(command.get("response_url", ""))

        async def checked() -> None:
            if role is not None and verdict is None and not await self._allowed(user, role, cmd.verb, reply):
                return
            await self._command(cmd, job, user, reply)

        self._work(checked(), reply)

    async def _allowed(self, user: str, role: Role, what: str, reply: Reply) -> bool:
        """Whether ``user`` has ``role``; if not, tells them why (ephemerally) and logs it."""
        verdict = await self._roles.check(user, role)
        if not verdict.allowed:
            log.warning("refused %s from %s (not one of the %ss)", what, user, role)
            await reply(messages.text_message(verdict.why))
        return verdict.allowed

    def _work(self, coro: Awaitable[Any], reply: Reply) -> None:
        """Start the slow part as a tracked task (shutdown waits for it); it reports any failure."""
        async def guarded() -> None:
            try:
                # A few at a time: a burst of commands must not hold up the acks of the next ones,
                # which share this event loop.
                async with self._work_slots:
                    await coro
            except FoojobError as exc:
                await reply(messages.text_message(f":warning: {messages.escape(str(exc))}"))
            except Exception:
                log.exception("Slack request failed")
                await reply(messages.text_message(":warning: Something went wrong; see foojob's log."))

        self._spawn(guarded(), "slack-work")

    async def _command(self, cmd: Command, job: str | None, user: str, reply: Reply) -> None:
        """``job`` None: a reading verb about every job (several jobs, none named)."""
        if job is None:
            await reply(await self._about_every_job(cmd))
            return
        if cmd.verb == "run-now":
            await self._run_now(job, user, reply)
        elif cmd.verb == "pause":
            await self._pause(job, user, reply, cmd.duration, cmd.reason)
        elif cmd.verb == "resume":
            await self._resume(job, user, reply)
        elif cmd.verb == "status":
            await reply(blocks.status_message(await self._control.status(job), self._tz))
        elif cmd.verb == "history":
            runs = await self._control.history(job, max(cmd.limit, blocks.STRIP_RUNS))
            await reply(blocks.history_message(job, runs[:cmd.limit], self._tz,
                                               {job: blocks.outcome_strip(runs)}))
        elif cmd.verb == "schedule":
            origin = self._control.spec(job).origin
            await reply(blocks.schedule_message(await self._control.schedule(job), origin=origin))
        elif cmd.verb in ("schedule-set", "schedule-reset"):
            reset = cmd.verb == "schedule-reset"
            current, proposed = await self._control.preview(job, None if reset else cmd.cron, cmd.timezone)
            if proposed.same_as(current) and (current.source == "config") == reset:
                await reply(messages.text_message(f"{job} already runs `{current.cron}` ({current.timezone}); "
                                                "nothing to change."))
            else:
                await reply(blocks.schedule_preview(current, proposed, reset=reset))
        elif cmd.verb == "next":
            await reply(blocks.next_message(await self._control.schedule(job), cmd.limit))
        elif cmd.verb == "skip":
            await self._skip(job, user, reply)
        elif cmd.verb == "unskip":
            await self._unskip(job, user, reply)

    async def _about_every_job(self, cmd: Command) -> Message:
        """status, history, next and schedule without a job, when there are several."""
        jobs = self._control.jobs
        if cmd.verb == "status":
            return blocks.statuses_message([await self._control.status(job) for job in jobs], self._tz)
        if cmd.verb == "history":
            return blocks.history_message(None, await self._control.history(None, cmd.limit), self._tz,
                                          await self._strips(jobs))
        schedules = [await self._control.schedule(job) for job in jobs]
        if cmd.verb == "next":
            return blocks.next_of_every_job(schedules, cmd.limit)
        return blocks.schedules_message(schedules)

    async def _skip(self, job: str, user: str, reply: Reply) -> None:
        instant = await self._control.skip(job, by=user)
        schedule = await self._control.schedule(job)
        following = schedule.fires(1)[0]
        await reply(messages.text_message(
            f":fast_forward: The fire of {human_time(instant, schedule.tz)} will be skipped; "
            f"the next run is {human_time(following, schedule.tz)}. (`/foojob unskip` takes it back.)"))
        if self._announce_in_channel:
            await reply(messages.skip_message(job, user, instant, following, schedule.tz), in_channel=True)

    async def _unskip(self, job: str, user: str, reply: Reply) -> None:
        cleared = await self._control.unskip(job, by=user)
        if cleared is None:
            await reply(messages.text_message(f"No fire of {job} was skipped; nothing changed."))
            return
        await reply(messages.text_message(f":leftwards_arrow_with_hook: {job}: the fire of "
                                          f"{human_time(cleared, self._tz)} will run after all."))
        if self._announce_in_channel:
            await reply(messages.unskip_message(job, user, cleared, self._tz), in_channel=True)

    async def _run_now(self, job: str, user: str, reply: Reply) -> None:
        try:
            run = await self._control.run_now(job, by=user)
        except AlreadyRunning:
            await reply(messages.text_message(f":hourglass: {job} is already running; try again when it ends."))
            return
        await reply(messages.run_result_message(run, self._tz))

    async def _pause(self, job: str, user: str, reply: Reply, duration: timedelta | None,
                     reason: str | None) -> None:
        state = await self._control.pause(job, by=user, duration=duration, reason=reason)
        until = f" until {human_time(state.resume_at, self._tz)}" if state.resume_at else " until someone resumes it"
        await reply(messages.text_message(f":double_vertical_bar: Paused {job}{until}."))
        if self._announce_in_channel:
            await reply(messages.paused_message(state, self._tz), in_channel=True)

    async def _resume(self, job: str, user: str, reply: Reply) -> None:
        changed = await self._control.resume(job, by=user)
        await reply(messages.text_message(
            f":arrow_forward: Resumed {job}." if changed else f"{job} was not paused; nothing changed."))
        if changed and self._announce_in_channel:
            await reply(messages.resumed_message(job, user, automatic=False), in_channel=True)

    def _responder(self, url: str) -> Reply:
        """Answers through a response_url, on one HTTP session for all (Bolt's respond() opens a
        new session, and a new connection, for every answer)."""
        async def reply(message: Message, *, in_channel: bool = False, replace: bool = False) -> None:
            body = {"text": message.text, "blocks": message.blocks, "replace_original": replace,
                    "response_type": "in_channel" if in_channel else "ephemeral"}
            try:
                assert self._http is not None
                async with self._http.post(url, json=body) as resp:
                    if resp.status != 200:
                        # An expired response_url (30 min, 5 uses), invalid_blocks…
                        log.warning("Slack refused a reply (HTTP %s: %s)", resp.status, (await resp.text())[:200])
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("could not reply to Slack (%s)", type(exc).__name__)

        return reply

    def _replier(self, body: dict[str, Any], client: AsyncWebClient) -> Reply:
        """Clicks on a message answer through its response_url; clicks on the Home tab have none,
        so they answer by publishing the Home tab again, with the answer on top."""
        if body.get("container", {}).get("type") != "view":
            return self._responder(body.get("response_url", ""))
        user = body.get("user", {}).get("id", "")

        async def reply(message: Message, *, in_channel: bool = False, replace: bool = False) -> None:
            if not in_channel:
                await self._publish_home(client, user, notice=message)

        return reply

    async def _button(self, body: dict[str, Any], reply: Reply, role: Role) -> tuple[str, str] | None:
        """Return (job, user) if a click should go on, after telling the user why not."""
        user = body.get("user", {}).get("id", "")
        action = (body.get("actions") or [{}])[0]
        job = action.get("value") or self._control.default_job
        if not await self._allowed(user, role, f"the button {action.get('action_id')}", reply):
            return None
        # One click per button per message (or Home view version) per window, across replicas:
        # a double click acts once.
        container, view = body.get("container", {}), body.get("view") or {}
        where = (f"view:{view.get('id')}:{view.get('hash')}" if container.get("type") == "view"
                 else f"msg:{container.get('channel_id')}:{container.get('message_ts')}")
        # The button's value too: a status message with several jobs has a Run now per job.
        if not await self._control.first_request(f"slack:{where}:{action.get('action_id')}:{job}", CLICK_WINDOW):
            await reply(messages.text_message("That click was already taken care of."))
            return None
        return job, user

    def _on_click(self, verb: str) -> Callable[..., Awaitable[None]]:
        async def handler(ack: Callable[..., Awaitable[None]], body: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            reply = self._replier(body, client)

            async def work() -> None:
                if (target := await self._button(body, reply, "operator")) is None:
                    return
                job, user = target
                if verb == "run-now":
                    await self._run_now(job, user, reply)
                elif verb == "pause":
                    await self._pause(job, user, reply, None, None)
                elif verb == "pause for an hour":
                    await self._pause(job, user, reply, timedelta(hours=1), None)
                else:
                    await self._resume(job, user, reply)

            self._work(work(), reply)

        return handler

    # -- modals ------------------------------------------------------------------------------

    def _on_open_modal(self, role: Role) -> Callable[..., Awaitable[None]]:
        """Pause (operators) or Change schedule (schedulers): the role is checked on the click, and
        again on submission."""
        async def handler(ack: Callable[..., Awaitable[None]], body: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            reply = self._replier(body, client)

            async def work() -> None:
                user = body.get("user", {}).get("id", "")
                job = (body.get("actions") or [{}])[0].get("value") or self._control.default_job
                self._control.spec(job)  # a forged value naming no job: refused (UnknownJob)
                if not await self._allowed(user, role, f"opening the {role}'s modal", reply):
                    return
                home = body.get("container", {}).get("type") == "view"
                channel = (body.get("channel") or {}).get("id")
                view = (modals.pause_modal(job, home=home, channel=channel) if role == "operator"
                        else modals.schedule_modal(await self._control.schedule(job), home=home, channel=channel))
                try:
                    await client.views_open(trigger_id=body.get("trigger_id", ""), view=view)
                except SlackApiError as exc:  # the trigger expired (3 s), …
                    log.warning("Slack did not open the modal (%s)", exc.response.get("error"))
                    await reply(messages.text_message(":warning: Slack did not open the form; click again."))

            self._work(work(), reply)

        return handler

    async def _on_schedule_typed(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                                 client: AsyncWebClient) -> None:
        """A change typed in the schedule modal: its preview follows (views.update, same view)."""
        await ack()
        view = body.get("view") or {}

        async def work() -> None:
            job, home, channel = modals.read_metadata(str(view.get("private_metadata") or ""))
            current = await self._control.schedule(job)
            cron, zone = modals.typed((view.get("state") or {}).get("values") or {})
            try:
                await client.views_update(view_id=view.get("id", ""), hash=view.get("hash"),
                                          view=modals.schedule_modal(current, cron, zone, home=home, channel=channel))
            except SlackApiError as exc:  # hash_conflict: a newer keystroke's update came first
                log.debug("schedule preview not updated (%s)", exc.response.get("error"))

        self._work(work(), _nowhere)

    async def _on_pause_submitted(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                                  client: AsyncWebClient) -> None:
        user, view = body.get("user", {}).get("id", ""), body.get("view") or {}
        job, home, channel = modals.read_metadata(str(view.get("private_metadata") or ""))
        try:
            if job not in self._control.jobs:
                raise modals.FieldError("reason", f"There is no job {job[:40]!r} to pause.")
            duration, reason = modals.read_pause((view.get("state") or {}).get("values") or {})
            await self._modal_allowed(user, "operator", "reason")
        except modals.FieldError as exc:
            await ack(response_action="errors", errors={exc.block_id: messages.truncate(str(exc), 150)})
            return
        await ack()  # the modal closes; the pause is announced in the channel

        async def pause() -> None:
            state = await self._control.pause(job, by=user, duration=duration, reason=reason)
            await self._announce(client, channel, messages.paused_message(state, self._tz))

        self._after_modal(pause(), client, user, home, channel)

    async def _on_schedule_submitted(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                                     client: AsyncWebClient) -> None:
        user, view = body.get("user", {}).get("id", ""), body.get("view") or {}
        job, home, channel = modals.read_metadata(str(view.get("private_metadata") or ""))
        try:
            if job not in self._control.jobs:
                raise modals.FieldError("cron", f"There is no job {job[:40]!r}.")
            cron, zone = modals.typed((view.get("state") or {}).get("values") or {})
            current = await self._in_time(self._control.schedule(job), "cron")  # its zone is kept if none is typed
            proposed = modals.proposal(current, cron, zone)
            await self._modal_allowed(user, "scheduler", "cron")
        except modals.FieldError as exc:
            await ack(response_action="errors", errors={exc.block_id: messages.truncate(str(exc), 150)})
            return
        await ack()

        async def change() -> None:
            old = current
            new = await self._control.set_schedule(job, proposed.cron, proposed.timezone, by=user)
            if not new.same_as(old):
                await self._announce(client, channel,
                                     messages.schedule_changed_message(old, new, user, "schedule-set", self._tz))

        self._after_modal(change(), client, user, home, channel)

    def _after_modal(self, change: Awaitable[Any], client: AsyncWebClient, user: str, home: bool,
                     channel: str | None) -> None:
        """Make a submitted modal's change, after its ack: a modal opened from the Home tab shows
        the change there; what failed is told to its user — on the Home tab it came from, or in its
        channel, visible to them only."""
        async def made() -> None:
            await change
            if home:
                await self._publish_home(client, user)

        async def reply(message: Message, *, in_channel: bool = False, replace: bool = False) -> None:
            if home:
                await self._publish_home(client, user, notice=message)
            elif channel:
                try:
                    await client.chat_postEphemeral(channel=channel, user=user, text=message.text,
                                                    blocks=message.blocks)
                except SlackApiError as exc:
                    log.warning("could not tell %s that their change failed (%s)", user, exc.response.get("error"))

        self._work(made(), reply)

    async def _modal_allowed(self, user: str, role: Role, field: str) -> None:
        """The role, checked again on a modal's submission: a refusal is shown on ``field``."""
        verdict = await self._in_time(self._roles.check(user, role), field)
        if not verdict.allowed:
            log.warning("refused a modal's submission from %s (not one of the %ss)", user, role)
            raise modals.FieldError(field, verdict.why)

    async def _in_time(self, step: Awaitable[T], field: str) -> T:
        """A step before a modal's ack, which Slack waits 3 s for: past ``MODAL_STEP_S`` the user is
        asked to submit again (on the field), and nothing changes."""
        try:
            return await asyncio.wait_for(step, MODAL_STEP_S)
        except (TimeoutError, FoojobError):
            raise modals.FieldError(field, "That could not be checked in time (Slack or the database is slow): "
                                           "submit again.") from None

    async def _announce(self, client: AsyncWebClient, channel: str | None, message: Message) -> None:
        """Without a webhook or SLACK_CHANNEL (nothing in the outbox tells the channel), a change made
        in a modal is announced in the channel the modal was opened from, as a command's is."""
        if not self._announce_in_channel or channel is None:
            return
        try:
            await client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        except SlackApiError as exc:
            log.warning("the change was not announced in %s (%s)", channel, exc.response.get("error"))

    async def _on_apply(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                        client: AsyncWebClient) -> None:
        """**Apply** on a schedule preview: the change it showed, for an allowed user, once."""
        await ack()
        reply = self._replier(body, client)

        async def work() -> None:
            try:
                change = json.loads((body.get("actions") or [{}])[0].get("value") or "")
                job, reset = str(change["job"]), bool(change.get("reset"))
                cron, timezone = (None, None) if reset else (str(change["cron"]), str(change["timezone"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                await reply(messages.text_message(":warning: That button does not say what to apply; nothing changed."))
                return
            if await self._button(body, reply, "scheduler") is None:
                return
            user = body.get("user", {}).get("id", "")
            old = await self._control.schedule(job)
            if reset:
                new = await self._control.reset_schedule(job, by=user)
            else:
                assert cron is not None
                new = await self._control.set_schedule(job, cron, timezone, by=user)
            fires = ", ".join(human_time(at, new.tz) for at in new.fires(3))
            await reply(messages.text_message(
                f":white_check_mark: Applied: {job} runs `{new.cron}` ({new.describe()}, {new.timezone}). "
                f"Next: {fires}."), replace=True)
            if self._announce_in_channel and not new.same_as(old):
                action = "schedule-reset" if reset else "schedule-set"
                await reply(messages.schedule_changed_message(old, new, user, action, self._tz), in_channel=True)

        self._work(work(), reply)

    async def _on_cancel(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                         client: AsyncWebClient) -> None:
        await ack()
        reply = self._replier(body, client)
        job = (body.get("actions") or [{}])[0].get("value") or ""
        text = f"Cancelled: the schedule of {messages.escape(job[:40])} was not changed." if job else \
            "Cancelled: the schedule was not changed."
        self._work(reply(messages.text_message(text), replace=True), reply)

    async def _on_home_opened(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") == "home":  # the event is acked when this returns; the tab follows
            self._spawn(self._publish_home(client, event["user"]), "slack-work")

    async def _strips(self, jobs: list[str]) -> dict[str, str]:
        """Each job's last 30 outcomes at a glance."""
        return {job: blocks.outcome_strip(await self._control.history(job, blocks.STRIP_RUNS)) for job in jobs}

    async def _publish_home(self, client: AsyncWebClient, user: str, notice: Message | None = None) -> None:
        try:
            statuses = [await self._control.status(job) for job in self._control.jobs]
            runs = await self._control.history(None, 10)
            view = blocks.home_view(statuses, runs, self._tz, notice=notice,
                                    strips=await self._strips(self._control.jobs))
        except FoojobError as exc:
            view = blocks.home_unavailable_view(str(exc))
        try:
            await client.views_publish(user_id=user, view=view)
        except SlackApiError as exc:
            log.warning("Slack refused the Home tab (%s)", exc.response.get("error"))


