"""Heartbeat pings (bot.pings) against a local server playing hc-ping.com over real HTTP."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

import pytest
from aiohttp import web

from bot.config import Secret
from bot.pings import BODY_LIMIT, MAX_QUEUED, NoPinger, Pinger, fit_body, make_pinger, run_id
from tests.conftest import wait_until

CHECK = "0f6a51c2-2b55-4c8e-9a77-3d1f0be2c9e4"  # the check's UUID: the secret part of the URL
TIMEOUT = 0.5
KEY = "foo:2026-11-26T00:01:00+00:00"
CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    content_type: str
    at: float  # time.monotonic() on arrival


@dataclass
class HcPing:
    """Plays hc-ping.com: records every request on arrival, in order, and answers ``status``
    ("OK"). ``stall_next`` requests, or all while ``stall_all``, get no answer until the test ends."""

    base: str = ""
    received: list[Received] = field(default_factory=list)
    status: int = 200
    stall_next: int = 0
    stall_all: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = f"/ping/{CHECK}") -> str:
        return self.base + path

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.received]


@pytest.fixture
async def hc() -> AsyncIterator[HcPing]:
    server = HcPing()

    async def ping(request: web.Request) -> web.Response:
        server.received.append(Received(request.method, request.path, dict(request.query), await request.read(),
                                        request.headers.get("Content-Type", ""), time.monotonic()))
        if server.stall_all or server.stall_next:
            server.stall_next = max(0, server.stall_next - 1)
            await server.release.wait()
        return web.Response(status=server.status, text="OK" if server.status == 200 else "oops")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ping)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.fixture
async def pingers() -> AsyncIterator[Callable[..., Pinger]]:
    """Pingers for the test, closed after it even when it fails half-way (an unclosed session fails)."""
    made: list[Pinger] = []

    def make(url: str, **kwargs: float) -> Pinger:
        pinger = Pinger(Secret(url), timeout_s=kwargs.pop("timeout_s", TIMEOUT), **kwargs)
        made.append(pinger)
        return pinger

    yield make
    for pinger in made:
        await pinger.aclose(0.1)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.pings" and r.levelno >= logging.WARNING]


def assert_no_secret_in_logs(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for record in caplog.records:
        line = f"{record.getMessage()} {record.__dict__!r}"
        for secret in secrets:
            assert secret not in line, f"{secret!r} logged: {line}"
        assert record.exc_info is None and record.exc_text is None  # one line, no traceback


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the protocol -------------------------------------------------------------------------------

async def test_a_run_that_succeeds_pings_start_then_success_with_one_run_id(
        hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    pinger = pingers(hc.url())
    pinger.start()
    pinger.started(KEY)
    pinger.succeeded(KEY)
    pinger.started("foo:2026-11-26T00:02:00+00:00")
    await wait_until(lambda: len(hc.received) == 3, message="three pings")
    assert hc.calls() == [("GET", f"/ping/{CHECK}/start"), ("GET", f"/ping/{CHECK}"),
                          ("GET", f"/ping/{CHECK}/start")]
    rids = [r.query["rid"] for r in hc.received]
    assert rids[0] == rids[1] == run_id(KEY) != rids[2]
    assert all(CANONICAL_UUID.match(rid) for rid in rids)  # what Healthchecks accepts
    assert uuid.UUID(rids[0]).version == 5


async def test_a_run_that_fails_pings_start_then_fail_with_the_reason_as_body(
        hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    pinger = pingers(hc.url())
    pinger.start()
    pinger.started(KEY)
    pinger.failed(KEY, "RuntimeError: the job broke — ünïcode")
    await wait_until(lambda: len(hc.received) == 2, message="two pings")
    assert hc.calls() == [("GET", f"/ping/{CHECK}/start"), ("POST", f"/ping/{CHECK}/fail")]
    fail = hc.received[1]
    assert fail.body.decode() == "RuntimeError: the job broke — ünïcode"
    assert fail.content_type == "text/plain; charset=utf-8"
    assert fail.query == {"rid": run_id(KEY)} == hc.received[0].query


async def test_a_long_reason_is_cut_to_the_documented_body_limit(hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    pinger = pingers(hc.url())
    pinger.start()
    pinger.failed(KEY, "é" * BODY_LIMIT)  # 2 bytes a character: twice the limit
    await wait_until(lambda: hc.received, message="the fail ping")
    body = hc.received[0].body
    assert len(body) <= BODY_LIMIT and body.decode().endswith("…") and body.decode().startswith("éé")
    assert fit_body("short") == b"short"
    assert fit_body("x" * BODY_LIMIT) == b"x" * BODY_LIMIT  # exactly at the limit: whole


async def test_a_query_in_the_url_is_kept(hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    # A slug URL that creates its check on first ping (documented ``?create=1``).
    pinger = pingers(hc.url("/ping/pingkey123/foojob-foo?create=1"))
    pinger.start()
    pinger.started(KEY)
    pinger.succeeded(KEY)
    await wait_until(lambda: len(hc.received) == 2, message="two pings")
    assert hc.calls() == [("GET", "/ping/pingkey123/foojob-foo/start"), ("GET", "/ping/pingkey123/foojob-foo")]
    assert all(r.query == {"create": "1", "rid": run_id(KEY)} for r in hc.received)


# -- never in the run's way ---------------------------------------------------------------------

async def test_the_run_s_calls_return_at_once_while_the_endpoint_stalls(
        hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    for method in (Pinger.started, Pinger.succeeded, Pinger.failed):
        assert not inspect.iscoroutinefunction(method)  # plain calls: nothing for the run to await
    hc.stall_all = True
    pinger = pingers(hc.url(), timeout_s=30.0)
    pinger.start()
    pinger.started(KEY)
    await wait_until(lambda: hc.received, message="the first ping to reach the stalling endpoint")
    slowest = 0.0
    for i in range(20):
        key = f"foo:run-{i}"
        for call in (partial(pinger.started, key), partial(pinger.succeeded, key),
                     partial(pinger.failed, key, "boom")):
            began = time.perf_counter()
            assert call() is None  # not a coroutine: returned, done
            slowest = max(slowest, time.perf_counter() - began)
    assert slowest < 0.05
    assert len(hc.received) == 1  # all the while, the first ping is still stalled


async def test_a_stalling_endpoint_holds_later_pings_back_by_the_timeout_only(
        hc: HcPing, pingers: Callable[..., Pinger], caplog: pytest.LogCaptureFixture) -> None:
    hc.stall_next = 1
    pinger = pingers(hc.url())
    pinger.start()
    pinger.started(KEY)
    pinger.succeeded(KEY)
    await wait_until(lambda: len(hc.received) == 2, timeout=5, message="the ping after the stalled one")
    gap = hc.received[1].at - hc.received[0].at
    assert TIMEOUT * 0.9 <= gap < TIMEOUT + 1.0
    assert hc.calls() == [("GET", f"/ping/{CHECK}/start"), ("GET", f"/ping/{CHECK}")]
    [warning] = warnings_of(caplog)
    assert warning.getMessage().startswith("heartbeat ping failed: no answer within 0.5 s (start of foo:")
    assert_no_secret_in_logs(caplog, hc.url(), CHECK)


async def test_a_queue_that_cannot_drain_is_bounded(hc: HcPing, pingers: Callable[..., Pinger],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    hc.stall_all = True
    pinger = pingers(hc.url(), timeout_s=30.0)
    pinger.start()
    pinger.started(KEY)
    await wait_until(lambda: hc.received, message="the first ping to stall")
    for i in range(MAX_QUEUED + 10):
        pinger.succeeded(f"foo:run-{i}")
    [warning] = warnings_of(caplog)
    assert warning.getMessage() == (
        f"heartbeat ping failed: too many pings waiting, this one is dropped (success of foo:run-{MAX_QUEUED})")


# -- failures: logged once a minute, never with the URL -----------------------------------------

async def test_an_endpoint_that_is_down_raises_nothing_and_logs_one_line_without_the_url(
        pingers: Callable[..., Pinger], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.pings")
    url = f"http://127.0.0.1:{closed_port()}/ping/{CHECK}"
    pinger = pingers(url)
    pinger.start()
    for i in range(20):
        pinger.started(f"foo:run-{i}")
        pinger.failed(f"foo:run-{i}", "boom")
    await pinger.aclose(5.0)  # sends (tries) all that is queued
    [warning] = warnings_of(caplog)
    assert warning.getMessage().startswith("heartbeat ping failed: ClientConnectorError (start of foo:run-0)")
    assert_no_secret_in_logs(caplog, url, CHECK)
    assert CHECK not in caplog.text


async def test_http_errors_warn_once_a_minute_then_recovery_is_noted(
        hc: HcPing, pingers: Callable[..., Pinger], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.pings")
    hc.status = 500
    pinger = pingers(hc.url(), warn_every_s=0.3)  # "a minute", made short
    pinger.start()
    for i in range(5):
        pinger.started(f"foo:run-{i}")
        pinger.succeeded(f"foo:run-{i}")
    await wait_until(lambda: len(hc.received) == 10, message="ten pings")
    [warning] = warnings_of(caplog)
    assert warning.getMessage() == "heartbeat ping failed: HTTP 500 (start of foo:run-0)"
    assert warning.__dict__["error"] == "HTTP 500"

    window_over = time.monotonic() + 0.3
    await wait_until(lambda: time.monotonic() > window_over, message="the warning window to pass")
    pinger.failed("foo:run-5", "boom")
    await wait_until(lambda: len(warnings_of(caplog)) == 2, message="the next window's warning")
    assert warnings_of(caplog)[1].getMessage() == (
        "heartbeat ping failed: HTTP 500 (fail of foo:run-5); 9 more failed since the last warning")

    hc.status = 200
    pinger.succeeded("foo:run-6")
    await wait_until(lambda: "heartbeat pings get through again" in caplog.messages, message="recovery")
    assert len(warnings_of(caplog)) == 2
    assert_no_secret_in_logs(caplog, hc.url(), CHECK)


# -- lifecycle ----------------------------------------------------------------------------------

async def test_aclose_sends_what_is_queued(hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    pinger = pingers(hc.url())
    pinger.start()
    for i in range(3):
        pinger.started(f"foo:run-{i}")
        if i == 1:
            pinger.failed(f"foo:run-{i}", "boom")
        else:
            pinger.succeeded(f"foo:run-{i}")
    await pinger.aclose(5.0)
    assert hc.calls() == [("GET", f"/ping/{CHECK}/start"), ("GET", f"/ping/{CHECK}"),
                          ("GET", f"/ping/{CHECK}/start"), ("POST", f"/ping/{CHECK}/fail"),
                          ("GET", f"/ping/{CHECK}/start"), ("GET", f"/ping/{CHECK}")]
    pinger.started("foo:late")  # after shutdown: ignored, raises nothing
    await pinger.aclose(5.0)  # twice: harmless
    assert len(hc.received) == 6


async def test_pings_queued_before_start_go_out_in_order_once_started(
        hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    pinger = pingers(hc.url())
    pinger.started(KEY)
    pinger.succeeded(KEY)
    pinger.start()
    pinger.start()  # idempotent: still one sending task
    await wait_until(lambda: len(hc.received) == 2, message="two pings")
    assert hc.calls() == [("GET", f"/ping/{CHECK}/start"), ("GET", f"/ping/{CHECK}")]


async def test_aclose_gives_up_after_within_s_and_drops_the_rest(
        hc: HcPing, pingers: Callable[..., Pinger], caplog: pytest.LogCaptureFixture) -> None:
    hc.stall_all = True
    pinger = pingers(hc.url(), timeout_s=30.0)
    pinger.start()
    pinger.started(KEY)
    pinger.succeeded(KEY)
    pinger.started("foo:next")
    await wait_until(lambda: hc.received, message="the first ping to stall")
    began = time.monotonic()
    await pinger.aclose(0.3)
    assert 0.25 <= time.monotonic() - began < 1.5
    assert len(hc.received) == 1
    [warning] = warnings_of(caplog)
    assert warning.getMessage() == "heartbeat: 3 ping(s) not sent before shutdown"


async def test_without_a_url_nothing_is_pinged() -> None:
    nothing = make_pinger(None)
    assert isinstance(nothing, NoPinger)
    nothing.start()
    nothing.started(KEY)
    nothing.succeeded(KEY)
    nothing.failed(KEY, "boom")
    await nothing.aclose(1.0)
    pinger = make_pinger(Secret(f"http://127.0.0.1:{closed_port()}/ping/{CHECK}"))
    assert isinstance(pinger, Pinger)
    await pinger.aclose(1.0)  # never started: closes cleanly all the same


async def test_job_in_the_url_makes_a_check_per_job(hc: HcPing, pingers: Callable[..., Pinger]) -> None:
    # Healthchecks' slug URLs: https://hc-ping.com/<ping key>/<slug>; "{job}" is each job's name.
    pinger = pingers(hc.url("/ping/PINGKEY/{job}"))
    pinger.start()
    pinger.started("nightly-rollup:2026-11-26T03:00:00+00:00")
    pinger.succeeded("nightly-rollup:2026-11-26T03:00:00+00:00")
    pinger.failed(KEY, "boom")
    await wait_until(lambda: len(hc.received) == 3, message="three pings")
    assert hc.calls() == [("GET", "/ping/PINGKEY/nightly-rollup/start"), ("GET", "/ping/PINGKEY/nightly-rollup"),
                          ("POST", "/ping/PINGKEY/foo/fail")]


async def test_the_service_pings_each_jobs_check(spawn, db_url: str, hc: HcPing, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rollup.sql").write_text("-- cron: * * * * * *\nSELECT 1 AS one;\n")
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON="* * * * * *", FOOJOB_JOBS_DIR=str(tmp_path),
                      FOOJOB_HEARTBEAT_URL=hc.url("/ping/PINGKEY/{job}")).started()
    await wait_until(lambda: {"/ping/PINGKEY/foo", "/ping/PINGKEY/rollup"} <= {path for _, path in hc.calls()},
                     message="a success ping of each job")
    assert await svc.stop() == 0
    assert "PINGKEY" not in svc.stderr()  # the URL is a secret
