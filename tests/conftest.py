"""Test fixtures: a real PostgreSQL, one database per test, real service processes, a webhook sink.

The server is ``TEST_DATABASE_URL`` when set (CI points it at the machine's PostgreSQL), else an
embedded one (pgserver) started for the session. A template database is migrated once per
session; each test gets ``CREATE DATABASE … TEMPLATE`` of it, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.pg import embedded_postgres

ROOT = Path(__file__).resolve().parent.parent

# Variables of the service that must not leak from the developer's shell into a test.
SERVICE_VARS = ("DATABASE_URL", "FOOJOB_DATA_DIR", "FOOJOB_CRON", "FOOJOB_TIMEZONE", "SLACK_BOT_TOKEN",
                "SLACK_APP_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_API_URL", "SLACK_ALLOWED_USERS", "SLACK_SCHEDULERS",
                "SLACK_CHANNEL", "HOST",
                "PORT", "CONTROL_API_TOKEN", "LOG_LEVEL", "LOG_FORMAT", "FOOJOB_MISFIRE_GRACE", "FOOJOB_TIMEOUT",
                "FOOJOB_NOTIFY", "FOOJOB_ALERT_AFTER", "FOOJOB_ALERT_MENTION", "FOOJOB_LATE_AFTER",
                "FOOJOB_HEARTBEAT_URL", "FOOJOB_KEEP_RUNS", "FOOJOB_JOBS_DIR", "FOOJOB_DEFAULT_JOB",
                "DATABASE_POOL_SIZE")
# Services under test see only the jobs a test gives them: not SQL files someone dropped in jobs/.
NO_SQL_JOBS = tempfile.mkdtemp(prefix="foojob-no-sql-jobs-")


def catalogue(cron: str = "1 0 * * *", *, tz: Any = "UTC", notify: str = "all", timeout: str = "10m",
              jobs: dict[str, Any] | None = None, default: str = "foo") -> Any:
    """A job catalogue for tests that build the core by hand: foo (or ``jobs``: name -> bot.model.Job),
    every job's schedule ``cron``, the process-wide defaults given."""
    from zoneinfo import ZoneInfo

    from bot import catalogue as cat
    from jobs import JOBS

    defaults = cat.Defaults(ZoneInfo(tz) if isinstance(tz, str) else tz, cat.parse_span(timeout), notify)
    python_jobs = {name: dataclasses.replace(job, cron_variable=None, default_cron=cron)
                   for name, job in (jobs or JOBS).items()}
    return cat.load(python_jobs, lambda _: None, None, defaults, default)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05,
                     message: str = "condition") -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        await asyncio.sleep(interval)


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    with embedded_postgres("foojob-test-pg-") as uri:
        yield uri


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """A database migrated once, copied for each test."""
    from bot.db import Queries, connect, migrate

    name = f"foojob_tpl_{uuid.uuid4().hex[:10]}"

    async def build() -> None:
        await _admin(pg_server, f'CREATE DATABASE "{name}"')
        conn = await connect(with_database(pg_server, name))
        try:
            await migrate(conn, Queries())
        finally:
            await conn.close()

    asyncio.run(build())
    yield name
    asyncio.run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_url(pg_server: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test."""
    name = f"foojob_t_{uuid.uuid4().hex[:12]}"
    await _admin(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield with_database(pg_server, name)
    # Everything the test opened is closed by now (services stopped, pools closed): a connection
    # still there is a leak. Backends of killed processes take a moment to go.
    admin = await asyncpg.connect(pg_server)
    try:
        leaked = await wait_until_quiet(admin, name)
    finally:
        await admin.close()
    await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert not leaked, f"connections left open by the test: {leaked}"


async def wait_until_quiet(admin: asyncpg.Connection, name: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        rows = await admin.fetch("SELECT application_name, state, query FROM pg_stat_activity WHERE datname = $1",
                                 name)
        if not rows or time.monotonic() > deadline:
            return [f"{r['application_name']!r} {r['state']}: {r['query'][:60]!r}" for r in rows]
        await asyncio.sleep(0.05)


@pytest.fixture
async def empty_db_url(pg_server: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all."""
    name = f"foojob_e_{uuid.uuid4().hex[:12]}"
    await _admin(pg_server, f'CREATE DATABASE "{name}"')
    yield with_database(pg_server, name)
    await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the test's own reads and fault injection."""
    from bot.db import connect

    conn = await connect(db_url)
    yield conn
    await conn.close()


# -- a webhook sink -----------------------------------------------------------------------------

@dataclass
class Attempt:
    at: float  # time.monotonic() when the request arrived
    status: int
    body: dict[str, Any]


@dataclass
class WebhookSink:
    """Plays a Slack incoming webhook: records each POST; answers 200 "ok" unless scripted.

    ``script`` is consumed one entry per request: a status (``500``, ``410``), ``(429, seconds)``
    for a rate limit with ``Retry-After``, or ``("stall", seconds)`` to hang before answering 200.
    While ``down`` is set every request gets 500; ``slow_s`` delays every answer.
    """

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)  # bodies answered 200, in order
    attempts: list[Attempt] = field(default_factory=list)
    script: list[Any] = field(default_factory=list)
    down: bool = False
    slow_s: float = 0.0  # every answer takes this long (a Slack that is slow, not down)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.received]

    def run_ids(self) -> list[int]:
        return [int(m) for t in self.texts() for m in re.findall(r"run #(\d+)", t)]


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink()

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        if sink.slow_s:
            await asyncio.sleep(sink.slow_s)
        step = sink.script.pop(0) if sink.script else (500 if sink.down else 200)
        if isinstance(step, tuple) and step[0] == "stall":
            sink.attempts.append(Attempt(time.monotonic(), 0, body))
            await asyncio.sleep(step[1])
            step = 200
        elif isinstance(step, tuple):
            sink.attempts.append(Attempt(time.monotonic(), step[0], body))
            return web.Response(status=step[0], text="rate_limited", headers={"Retry-After": str(step[1])})
        else:
            sink.attempts.append(Attempt(time.monotonic(), step, body))
        if step == 200:
            sink.received.append(body)
            return web.Response(text="ok")
        reason = {400: "invalid_payload", 403: "action_prohibited", 404: "channel_not_found",
                  410: "channel_is_archived"}.get(step, "scripted_failure")
        return web.Response(status=step, text=reason)

    app = web.Application()
    app.router.add_post("/services/T000/B000/secretpart", receive)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sink.url = f"http://127.0.0.1:{port}/services/T000/B000/secretpart"
    yield sink
    await runner.cleanup()


# -- service processes --------------------------------------------------------------------------

def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env.update({"HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1",
                "FOOJOB_JOBS_DIR": NO_SQL_JOBS})
    env.update(overrides)
    return env


class Service:
    """``python -m bot`` in a real process; its stdout and stderr go to files the test can read."""

    def __init__(self, tmp: Path, env: dict[str, str], args: tuple[str, ...] = (),
                 preexec_fn: Callable[[], Any] | None = None) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = tmp / "stdout.log", tmp / "stderr.log"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env,
                                     stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     preexec_fn=preexec_fn)
        self.url = ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def started(self, timeout: float = 20.0) -> Service:
        def ready() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.stderr()}")
            match = re.search(r"listening on http://[^:]+:(\d+)", self.stderr())
            return match.group(1) if match and "scheduled foo" in self.stderr() else None

        port = await wait_until(ready, timeout=timeout, message="the service to start")
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def wait_log(self, pattern: str, *, count: int = 1, timeout: float = 10.0) -> None:
        await wait_until(lambda: len(re.findall(pattern, self.stderr())) >= count, timeout=timeout,
                         message=f"{count} log line(s) matching {pattern!r}")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        await wait_until(lambda: self.proc.poll() is not None, timeout=timeout, message="the service to exit")
        self._out.close()
        self._err.close()
        return self.proc.returncode

    async def wait_exit(self, timeout: float = 30.0) -> int:
        await wait_until(lambda: self.proc.poll() is not None, timeout=timeout, message="the service to exit")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()


class Spawner:
    """``spawn(DATABASE_URL=…, FOOJOB_CRON=…)`` starts a service; ``kill_all()`` ends them all."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self.started: list[Service] = []

    def __call__(self, *args: str, preexec_fn: Callable[[], Any] | None = None, **env: str) -> Service:
        service = Service(self._tmp / f"svc{len(self.started)}", service_env(**env), args, preexec_fn)
        self.started.append(service)
        return service

    def kill_all(self) -> None:
        for service in self.started:
            service.kill()


@pytest.fixture
async def slack(spawn: Spawner) -> AsyncIterator[Any]:
    """A local Slack (tests/slack_sim.py) for the services the test spawns."""
    from tests.slack_sim import SlackSimulator

    sim = await SlackSimulator().start()
    yield sim
    spawn.kill_all()  # before Slack goes away, or the clients would reconnect into a closing server
    await sim.stop()


@pytest.fixture
def spawn(tmp_path: Path, db_url: str) -> Iterator[Spawner]:
    """Services for the test; all are killed after it (before its database is checked for leaked
    connections)."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.kill_all()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=service_env(**env),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def get_json(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except json.JSONDecodeError:
            raise AssertionError(f"{method} {url} answered {resp.status} with non-JSON: {text[:200]!r}") from None


# The job's lock is held by a run in progress (any process; see sql/queries.sql).
RUN_LOCK = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 7263520 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


async def run_in_progress(url: str, message: str = "a run in progress") -> None:
    """Wait until some process holds the job's lock: a run is under way."""
    conn = await asyncpg.connect(url)
    try:
        await wait_until(lambda: conn.fetchval(f"SELECT count(*) FROM ({RUN_LOCK}) AS held"), message=message)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def row_locked(url: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold a lock on foo's row 1 so that a run of the foo job blocks until the block ends."""
    conn = await asyncpg.connect(url)
    try:
        tr = conn.transaction()
        await tr.start()
        await conn.execute("INSERT INTO foo VALUES (1, now()) ON CONFLICT (id) DO NOTHING")
        await tr.commit()
        tr = conn.transaction()
        await tr.start()
        await conn.execute("SELECT * FROM foo WHERE id = 1 FOR UPDATE")
        try:
            yield conn
        finally:
            await tr.rollback()
    finally:
        await conn.close()
