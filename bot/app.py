"""Wiring: builds the parts from the settings and owns start-up and shutdown order.

Start-up: HTTP binds first (platforms such as Heroku want ``$PORT`` bound at once; until the
database is ready the API answers 503), then the database (embedded or external), migrations,
the core, the outbox dispatcher and the LISTEN connection, one catch-up run if a fire was missed
while every replica was down, the scheduler, and last Slack.

Shutdown (SIGTERM or SIGINT) is the reverse: stop firing, stop accepting requests and Slack
commands, and let the run in progress finish (up to 25 s); finish the Slack delivery in progress
(what is still pending stays in the outbox for the next process); close the pool; stop the
embedded server. Exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import asyncpg
from aiohttp import web

from bot import __version__
from bot.config import Settings
from bot.control import Control
from bot.db import (
    CONNECTION_ERRORS,
    EmbeddedPostgres,
    Queries,
    connect,
    create_pool,
    describe_target,
    migrate,
    migrations,
    on_refused,
    schema_missing,
    usable,
    wait_for_database,
)
from bot.errors import DatabaseUnavailable, FoojobError
from bot.frontdoor import GuardedRunner, quiet_client_errors
from bot.http import Backend, build_app
from bot.listener import Listener
from bot.logs import replica_name
from bot.messages import change_message, gap_message
from bot.metrics import Metrics
from bot.notify import Notifier, OutboxNotifier, SilentNotifier, StdoutNotifier
from bot.outbox import Dispatcher
from bot.pings import make_pinger, per_job
from bot.retention import Pruner
from bot.retrier import Retrier
from bot.runner import Policy, Runner
from bot.scheduler import MISFIRE_GRACE, Scheduler
from bot.standby import Standby
from bot.tasks import Tasks
from bot.timefmt import span
from bot.watch import Watcher

if TYPE_CHECKING:
    from bot.slack.app import SlackSurface

log = logging.getLogger(__name__)
T = TypeVar("T")

SHUTDOWN_GRACE_S = 25.0
START_WAIT_S = 30.0  # how long start-up waits for the database (and retries a lost connection)
CLI_WAIT_S = 5.0  # how long a CLI command waits for it: someone is waiting at the prompt
DELIVERY_GRACE_S = 6.0  # a POST to Slack times out after 5 s
POOL_CLOSE_S = 5.0


@dataclass
class Core:
    dsn: str
    pool: asyncpg.Pool
    queries: Queries
    notifier: Notifier
    runner: Runner
    control: Control
    metrics: Metrics


async def _close_pool(pool: asyncpg.Pool) -> None:
    # close() waits for every connection to be released; a run stuck past the shutdown grace
    # must not hang the exit, so after a few seconds the connections are cut (its transaction
    # rolls back: no half state).
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_S)
    except TimeoutError:
        log.error("connections still busy after %.0f s: closing them", POOL_CLOSE_S)
        pool.terminate()


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[str]:
    """Yield a DSN: ``DATABASE_URL``, or an embedded server under ``FOOJOB_DATA_DIR``."""
    if settings.database_url is not None:
        yield settings.database_url.reveal()
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    log.info("DATABASE_URL is unset: starting the embedded PostgreSQL in %s", embedded.data_dir)
    dsn = await embedded.start()
    try:
        yield dsn
    finally:
        await embedded.stop()


async def _answered(step: Callable[[], Awaitable[T]], since: float) -> T:
    """A start-up step on the pool; the database going away meanwhile is waited for (30 s from
    ``since``, one warning line a try) rather than ending the process at once."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await step()
        except DatabaseUnavailable as exc:
            if loop.time() - since > START_WAIT_S:
                raise FoojobError(f"the database stayed unreachable during start-up ({exc})") from None
            log.warning("the database went away during start-up (%s); trying again", exc)
            await asyncio.sleep(0.5)


async def migrated(dsn: str, queries: Queries, *, within_s: float = START_WAIT_S, read_only: bool = False,
                   quiet: bool = False) -> list[int]:
    """Wait for the database and migrate it (the versions applied); a connection lost meanwhile (the server restarting,
    a proxy cutting) is tried again within the same 30 s, with one warning line. ``read_only``: migrate
    nothing — a database not set up (or not up to date) is a FoojobError saying how to set it up."""
    end = asyncio.get_running_loop().time() + within_s
    while True:
        await wait_for_database(dsn, deadline_s=max(1.0, end - asyncio.get_running_loop().time()), quiet=quiet)
        try:
            conn = await connect(dsn)
            try:
                if read_only:
                    if missing := await schema_missing(conn, queries):
                        state = "is not set up for foojob" if len(missing) == len(migrations()) else \
                            f"lacks {len(missing)} migration{'s' if len(missing) > 1 else ''} of this version"
                        raise FoojobError(f"the database at {describe_target(dsn)} {state}: run `foojob migrate` "
                                          "(or start the service), then try again")
                    return []
                return await migrate(conn, queries)
            finally:
                if not conn.is_closed():
                    await conn.close()
        except CONNECTION_ERRORS as exc:
            if asyncio.get_running_loop().time() > end:
                raise FoojobError(f"the database at {describe_target(dsn)} kept dropping the connection "
                                  f"during start-up ({type(exc).__name__})") from None
            log.warning("the connection to %s was lost during start-up (%s); trying again",
                        describe_target(dsn), type(exc).__name__)
            await asyncio.sleep(0.5)


@asynccontextmanager
async def open_core(settings: Settings, *, service: bool, metrics: Metrics | None = None,
                    read_only: bool = False) -> AsyncIterator[Core]:
    """The database (migrated), the notifier and the control core, closed in reverse order. A CLI
    command (``service`` False) waits 5 s for the database, not 30; ``read_only``: it reads, so it
    migrates nothing (a database not set up is an error saying so)."""
    async with AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(open_database(settings))
        queries = Queries()
        await migrated(dsn, queries, within_s=START_WAIT_S if service else CLI_WAIT_S, read_only=read_only,
                       quiet=not service)
        pool = await create_pool(dsn, max_size=settings.database_pool_size)
        stack.push_async_callback(_close_pool, pool)

        notifier: Notifier
        channels = {name: spec.channel for name, spec in settings.jobs.items() if spec.channel is not None}
        if settings.slack_webhook_url is not None or settings.slack_channel is not None or channels:
            notifier = OutboxNotifier(settings.slack_webhook_url, channel=settings.slack_channel, job_channels=channels,
                                      bot_token=settings.slack_bot_token, api_url=settings.slack_api_url)
            if settings.slack_channel is not None and service:
                log.info("SLACK_CHANNEL is set: results and announcements go to %s through the Web API (a card per "
                         "run, edited in place)%s", settings.slack_channel,
                         "; SLACK_WEBHOOK_URL is not used" if settings.slack_webhook_url is not None else "")
        elif service:
            notifier = StdoutNotifier()
            log.info("SLACK_WEBHOOK_URL is unset: run results go to stdout")
        else:
            notifier = SilentNotifier()
        stack.push_async_callback(notifier.aclose, DELIVERY_GRACE_S)

        metrics = metrics or Metrics(__version__)
        runner = Runner(pool, queries, settings.jobs, notifier, settings.timezone, metrics,
                        Policy(alert_after=settings.alert_after, alert_mention=settings.alert_mention))
        control = Control(pool, queries, runner, settings.jobs, settings.timezone, notifier)
        yield Core(dsn, pool, queries, notifier, runner, control, metrics)


def make_dispatcher(settings: Settings, core: Core) -> Dispatcher:
    """The outbox's dispatcher: the webhook, and the Web API with the bot token for channels."""
    return Dispatcher(core.pool, core.queries, settings.slack_webhook_url, bot_token=settings.slack_bot_token,
                      api_url=settings.slack_api_url, timezone=settings.timezone)


async def start_slack(settings: Settings, core: Core) -> SlackSurface:
    from bot.slack.app import SlackSurface  # slack-bolt loads only when Slack is on

    assert settings.slack_bot_token is not None and settings.slack_app_token is not None
    surface = SlackSurface(bot_token=settings.slack_bot_token, app_token=settings.slack_app_token,
                           api_url=settings.slack_api_url, allowed_users=settings.slack_allowed_users,
                           schedulers=settings.slack_schedulers,
                           control=core.control, timezone=settings.timezone,
                           announce_in_channel=settings.slack_webhook_url is None and settings.slack_channel is None)
    await surface.start()
    log.info("Slack control surface on: connecting over Socket Mode to %s", settings.slack_api_url)
    return surface


# Each replica says it is up this often (on its LISTEN connection, bot/listener.py): the whole
# database cost of an idle replica, 6 statements a minute.
HEARTBEAT_S = 10.0
MAX_GAP_FIRES = 100_000  # fires counted in a gap with no replica up, at most
# A process counts as up at an instant if it was seen this close to it.
ALIVE_MARGIN = timedelta(seconds=HEARTBEAT_S * 1.5)


# A fire this recent may still be run by a replica that is up (it runs a fire up to 30 s late:
# bot.scheduler.MISFIRE_GRACE): it is not counted in a gap while another replica looks alive.
LIVE_MARGIN = MISFIRE_GRACE


async def catch_up(settings: Settings, core: Core, replica: str, watcher: Watcher | None = None) -> None:
    """After a time when no replica was up: one message covering the whole gap, and one run for the
    latest fire missed, if it is recent enough (FOOJOB_MISFIRE_GRACE), the job has run before, and
    it is not paused (the runner checks that). Never more than one run.

    The gap begins where the last other process was last known up (its heartbeat, or its clean
    stop): fires after that had nobody to run them. Fires skipped while paused, or skipped on
    purpose, are not missed. Replicas starting together compute the same gap and report it once
    (the report is claimed in the database, like a fire)."""
    now = datetime.now(UTC)
    for name in core.control.jobs:
        try:
            await _catch_up_job(settings, core, replica, name, now, watcher)
        except DatabaseUnavailable as exc:
            log.warning("no catch-up for %s: %s", name, exc)


async def _catch_up_job(settings: Settings, core: Core, replica: str, name: str, now: datetime,
                        watcher: Watcher | None) -> None:
    since = await core.control.last_sign_of_life(name, replica, ALIVE_MARGIN)
    if since is None:
        return  # nothing ever ran here: a first start misses nothing
    missed = await core.control.missed_between(name, since, now, MAX_GAP_FIRES)
    if missed and missed[-1] > now - LIVE_MARGIN and await core.control.another_alive(replica, ALIVE_MARGIN):
        # A rolling restart: another replica is up, and the fires of the last moments are its to run
        # (it may be running one right now). They are not a gap; if it does not run them, the
        # watcher reports them missed once their time to arrive has passed.
        recent = [at for at in missed if at > now - LIVE_MARGIN]
        missed = missed[:len(missed) - len(recent)]
        if watcher is not None:
            watcher.missed(name, recent, "no replica ran it")
    if not missed:
        return
    latest = missed[-1]
    why_not: str | None = None
    if not settings.misfire_grace:
        why_not = "FOOJOB_MISFIRE_GRACE is 0"
    elif now - latest > settings.misfire_grace:
        why_not = f"older than FOOJOB_MISFIRE_GRACE ({span(settings.misfire_grace)})"
    elif not await core.control.has_run(name):
        why_not = "the job has never run (a first start never catches up)"
    message = gap_message(name, since, now, len(missed), len(missed) >= MAX_GAP_FIRES,
                          latest if why_not is None else None, why_not, settings.timezone)
    if await core.control.report_missed(name, missed, "no replica was up", message):
        core.metrics.missed_fires.labels(name).inc(len(missed))
        log.warning("%s: no replica was up from %s to %s: %d fire(s) missed; %s", name, since.isoformat(),
                    now.isoformat(), len(missed), why_not or "catching up the latest",
                    extra={"job": name, "trigger": "catch-up", "status": "missed",
                           "scheduled_for": latest.isoformat()})
    if why_not is not None:
        return
    run = await core.runner.run(name, trigger="catch-up", scheduled_for=latest)
    if run is not None:
        log.warning("%s missed its fire of %s while no replica was up: ran it now (run %d, %s)",
                    name, latest.isoformat(), run.id, run.status,
                    extra={"job": name, "run_id": run.id, "trigger": "catch-up", "status": run.status,
                           "scheduled_for": latest.isoformat()})


async def _sweep_cards(control: Control, tries: int = 30, every_s: float = 2.0) -> None:
    """At start-up: the cards of runs whose replica died mid-run say so. A card whose job is still
    locked (the dead process's backend lingers a moment, or a run is under way) is looked at again."""
    for _ in range(tries):
        try:
            swept, waiting = await control.sweep_cards()
        except DatabaseUnavailable:
            return
        if swept:
            log.warning("%d card(s) of runs whose replica died mid-run now say so", swept)
        if not waiting:
            return
        await asyncio.sleep(every_s)


async def _goodbye(control: Control, replica: str, listener: Listener) -> None:
    # A clean stop says so at once: a fire right after it is then missed, and caught up. The
    # listener (which carries the heartbeat) stops first, so no heartbeat can undo the goodbye.
    await listener.stop()
    with contextlib.suppress(DatabaseUnavailable):
        await control.goodbye(replica)


async def serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    metrics = Metrics(__version__)
    backend = Backend()
    backend.slack_enabled = settings.slack_enabled
    app = build_app(backend, token=settings.control_api_token, tz=settings.timezone, metrics_=metrics,
                    jobs=list(settings.jobs), default_job=settings.jobs.default,
                    bound_host=settings.host)
    # Idle and slow connections are capped and closed (bot.frontdoor); what clients can make
    # aiohttp and asyncio log is one line a minute per kind.
    quiet_client_errors()
    http = GuardedRunner(app, shutdown_timeout=SHUTDOWN_GRACE_S, access_log=None)
    await http.setup()
    http_open = True
    try:
        try:
            # "::" means every address, IPv6 and IPv4: asyncio sets IPV6_V6ONLY on an IPv6 socket,
            # so binding "::" alone would leave 127.0.0.1 unanswered; None binds both families.
            host = None if settings.host == "::" else settings.host
            await web.TCPSite(http, host, settings.port, backlog=http.backlog).start()
        except OSError as exc:
            raise FoojobError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror} "
                              "(another process has that port? set PORT)") from None
        port = http.addresses[0][1] if http.addresses else settings.port
        log.info("HTTP API listening on http://%s:%d", settings.host, port)
        if settings.slack_enabled:
            from bot.slack.app import check_tokens  # slack-bolt loads only when Slack is on

            assert settings.slack_bot_token is not None and settings.slack_app_token is not None
            # A token Slack refuses stops start-up here (ConfigError, exit 2), before anything runs.
            await check_tokens(settings.slack_bot_token, settings.slack_app_token, settings.slack_api_url)

        async with AsyncExitStack() as stack:
            starting = asyncio.ensure_future(
                stack.enter_async_context(open_core(settings, service=True, metrics=metrics)))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                log.info("stopped during start-up")
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                return 0
            core = starting.result()
            tasks = Tasks()
            stack.push_async_callback(tasks.cancel)

            # The effective schedules, after this start's configured ones have had their say.
            started = asyncio.get_running_loop().time()
            schedules = {job: await _answered(partial(core.control.reconcile, job), started)
                         for job in core.control.jobs}
            core.metrics.know_jobs(core.control.jobs)
            watcher = Watcher(core.control, core.notifier, settings.timezone, settings.late_after, core.metrics)
            stack.push_async_callback(watcher.close)
            core.runner.watch = watcher
            pings = make_pinger(settings.heartbeat_url)  # does nothing without FOOJOB_HEARTBEAT_URL
            pings.start()
            stack.push_async_callback(pings.aclose, DELIVERY_GRACE_S)
            core.runner.pings = pings
            core.runner.ping_job = None if per_job(settings.heartbeat_url) else settings.jobs.default
            scheduler = Scheduler(
                schedules, settings.timezone,
                on_fire=lambda job, at, version: core.runner.run(
                    job, trigger="schedule", scheduled_for=at, schedule_version=version),
                on_pause_expired=core.control.expire_pause,
                on_missed=watcher.missed,
            )
            core.control.on_state_change(scheduler.watch_state)
            core.control.on_state_change(watcher.state_changed)
            retrier = Retrier(core.control.pending_retries, lambda retry: core.runner.run(
                retry.job, trigger="retry", scheduled_for=retry.scheduled_for, attempt=retry.attempt),
                core.control.jobs)

            dispatcher: Dispatcher | None = None
            if isinstance(core.notifier, OutboxNotifier):
                dispatcher = make_dispatcher(settings, core)
                dispatcher.start()
                core.notifier.on_committed = dispatcher.wake
                stack.push_async_callback(dispatcher.stop, DELIVERY_GRACE_S)
                backend.channels = core.notifier.cards_anywhere

            async def reread(job: str, *, noticed: bool) -> None:
                try:
                    state = await core.control.state(job)
                except DatabaseUnavailable:
                    return
                scheduler.watch_state(state)
                watcher.state_changed(state)
                if not noticed:
                    return
                # A change made elsewhere (the CLI, another replica) is told here as one made here
                # is: a log line saying what changed, and without a webhook its announcement.
                with contextlib.suppress(DatabaseUnavailable):
                    for event in await core.control.changes_elsewhere(job):
                        message = change_message(event, state, settings.timezone)
                        log.info("%s (by %s, heard through NOTIFY)", message.text if message else
                                 f"{job}: {event['action']}", event["actor"] or "the scheduler",
                                 extra={"job": job, "action": event["action"], "actor": event["actor"]})
                        if message is not None and isinstance(core.notifier, StdoutNotifier):
                            core.notifier.publish_now(message)

            async def on_connect() -> None:  # also after a reconnection: re-read what was missed
                for job in core.control.jobs:
                    await reread(job, noticed=False)
                await retrier.reload()
                if dispatcher is not None:
                    dispatcher.wake()

            replica = f"{replica_name()}:{uuid.uuid4().hex[:6]}"

            async def beat(conn: asyncpg.Connection) -> None:
                said = await core.control.heartbeat(conn, replica, ALIVE_MARGIN)
                watcher.speaker = said.speaker
                watcher.reachable()
                scheduler.spread(said.rank, said.replicas)
                if said.outbox_pending and dispatcher is not None:  # left by a replica that died before delivering it
                    dispatcher.wake()

            surfaces: list[SlackSurface] = []  # the Slack surface, once on: told of user groups' changes

            def group_changed(group: str) -> None:  # Slack told another replica
                for surface in surfaces:
                    surface.forget_group(group)

            listener = Listener(core.dsn, {
                "foojob_control": lambda job: tasks.spawn(reread(job, noticed=True)),
                "foojob_retry": lambda job: tasks.spawn(retrier.reload(job)),
                "foojob_roles": group_changed,
            }, on_connect, beat, HEARTBEAT_S)
            await _answered(core.control.watch_changes, started)  # changes made elsewhere from now on are told
            listener.start()
            stack.push_async_callback(_goodbye, core.control, replica, listener)
            for job in core.control.jobs:
                # A timed pause that ran out while no replica was up: record and announce it now.
                with contextlib.suppress(DatabaseUnavailable):
                    await core.control.expire_pause(job)
                state = await _answered(partial(core.control.state, job), started)
                watcher.state_changed(state)
                if state.paused:
                    until = f" until {state.resume_at.isoformat()}" if state.resume_at else " until resumed"
                    log.warning("%s is PAUSED%s (by %s%s): its fires will be skipped", job, until,
                                state.paused_by, f", {state.pause_reason}" if state.pause_reason else "")
            # Slack before the first fire: an app token Slack refuses stops start-up (exit 2) here.
            slack = await start_slack(settings, core) if settings.slack_enabled else None
            if slack is not None:
                backend.slack_health = slack.health
                surfaces.append(slack)
            else:
                log.info("Slack control surface off: set SLACK_BOT_TOKEN and SLACK_APP_TOKEN to turn it on")
            # The first heartbeat before catching up and firing: this replica is on record, and knows
            # its place among the replicas up (bot.scheduler shares the fires by it).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.beaten.wait(), 5)
            await catch_up(settings, core, replica, watcher)
            if isinstance(core.notifier, OutboxNotifier) and core.notifier.cards_anywhere:
                tasks.spawn(_sweep_cards(core.control))
            # Runs, delivered messages and audit older than FOOJOB_KEEP_RUNS: now, then hourly.
            pruner = Pruner(core.pool, core.queries, settings.keep_runs)
            pruner.start()
            stack.push_async_callback(pruner.stop)
            scheduler.start()
            standby = Standby(scheduler, core.control.standby_watch, watcher.suspect,  # the others' fires
                              lambda: usable(core.pool), watcher.missed)
            on_refused(core.pool, standby.redraw)
            scheduler.try_every_fire(lambda: watcher.outage or standby.unable)
            standby.start()
            stack.push_async_callback(standby.stop)
            await retrier.reload()  # attempts left pending by a replica that stopped or died
            backend.control = core.control
            for name, sched in schedules.items():
                log.info("scheduled %s: %s, %s (%s; %s schedule%s)", name, sched.cron, sched.describe(),
                         sched.timezone, sched.source,
                         f" set by {sched.set_by}" if sched.source == "runtime" else "")

            await stopping
            log.info("shutting down: finishing the run in progress, if any")
            # Stop firing, taking requests and taking Slack commands together; what is running
            # finishes. Then the stack stops the listener and the dispatcher (pending messages stay
            # in the outbox), closes the pool and the database.
            await asyncio.gather(scheduler.stop(SHUTDOWN_GRACE_S), retrier.stop(SHUTDOWN_GRACE_S), http.cleanup(),
                                 *([slack.close(SHUTDOWN_GRACE_S)] if slack else []))
            http_open = False
    finally:
        if http_open:
            await http.cleanup()
    log.info("stopped")
    return 0
