"""The HTTP API of a real service process: every endpoint, bad input, and who may call it."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timedelta

import aiohttp
import psutil
import pytest

from tests.conftest import Service, WebhookSink, get_json, row_locked, wait_until

NEVER_SOON = "0 0 1 1 *"  # keeps the schedule out of the way of these tests


async def test_every_endpoint(spawn, db_url: str, http: aiohttp.ClientSession, webhook: WebhookSink) -> None:  # type: ignore[no-untyped-def]
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_TIMEZONE="Asia/Tokyo",
                               SLACK_WEBHOOK_URL=webhook.url).started()
    url = svc.url

    assert await get_json(http, "GET", f"{url}/isRunning") == (200, {"message": "true"})

    status, row = await get_json(http, "POST", f"{url}/runNow")
    assert status == 200 and set(row) == {"id", "colTimestamp"} and row["id"] == 1
    stamp = datetime.fromisoformat(row["colTimestamp"])
    assert stamp.utcoffset() == timedelta(hours=9)  # RFC 3339 with the configured zone's offset

    status, body = await get_json(http, "GET", f"{url}/runs?limit=5")
    assert status == 200 and len(body["runs"]) == 1
    run = body["runs"][0]
    assert run["trigger"] == "manual" and run["triggeredBy"] == "http" and run["scheduledFor"] is None
    assert run["status"] == "succeeded" and run["result"] == row and run["error"] is None
    assert set(run) == {"id", "job", "trigger", "scheduledFor", "startedAt", "finishedAt", "status", "result",
                        "error", "triggeredBy", "attempt"}
    assert run["attempt"] == 1

    assert await get_json(http, "POST", f"{url}/pause", json={"for": "2h", "reason": "deploy"}) == (
        200, {"message": "ok"})
    assert await get_json(http, "GET", f"{url}/isRunning") == (200, {"message": "false"})
    status, st = await get_json(http, "GET", f"{url}/status")
    assert status == 200
    assert st["paused"] is True and st["pausedBy"] == "http" and st["pauseReason"] == "deploy"
    assert st["nextRunAt"] is None and st["timezone"] == "Asia/Tokyo" and st["job"] == "foo"
    resume_in = datetime.fromisoformat(st["resumeAt"]) - datetime.fromisoformat(st["pausedAt"])
    assert timedelta(hours=1, minutes=59) < resume_in <= timedelta(hours=2, seconds=1)
    assert st["lastRun"]["id"] == run["id"]

    assert await get_json(http, "POST", f"{url}/resume") == (200, {"message": "ok"})
    status, st = await get_json(http, "GET", f"{url}/status")
    assert st["paused"] is False and st["pausedBy"] is None and st["resumeAt"] is None
    assert st["schedule"] == NEVER_SOON and st["scheduleDescription"] == "at 00:00 on day 1 of the month in January"
    assert st["nextRunAt"].endswith("-01-01T00:00:00+09:00")

    assert await get_json(http, "GET", f"{url}/healthz") == (
        200, {"status": "ok", "database": "ok", "slack": "off"})

    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        metrics = await resp.text()
    assert 'foojob_runs_total{job="foo",status="succeeded",trigger="manual"} 1.0' in metrics
    assert 'foojob_paused{job="foo"} 0.0' in metrics

    # The run's result and the pause/resume announcements reached the webhook.
    await wait_until(lambda: len(webhook.received) >= 3, message="three webhook messages")
    texts = webhook.texts()
    assert '"colTimestamp"' in texts[0] and "paused by http" in texts[1] and "resumed by http" in texts[2]


BAD_REQUESTS = [
    ("POST", "/pause", {"data": "not json"}, 400, "not valid JSON"),
    ("POST", "/pause", {"json": [1, 2]}, 400, "JSON object"),
    ("POST", "/pause", {"json": {"for": "2x"}}, 400, "not a duration"),
    ("POST", "/pause", {"json": {"for": "0m"}}, 400, "longer than zero"),
    ("POST", "/pause", {"json": {"for": 5}}, 400, "must be a string"),
    ("POST", "/pause", {"json": {"until": "tomorrow"}}, 400, "unknown field"),
    ("POST", "/pause?job=bar", {}, 404, "unknown job"),
    ("POST", "/runNow?job=bar", {}, 404, "unknown job"),
    ("GET", "/runs?limit=abc", {}, 400, "whole number"),
    ("GET", "/runs?limit=1000", {}, 400, "between 1 and 100"),
    ("GET", "/runs?limit=²", {}, 400, "whole number"),
    ("POST", "/pause", {"json": {"for": "99999999999999d"}}, 400, "not a duration"),
    ("POST", "/pause", {"json": {"for": "1000d"}}, 400, "too long a pause"),
    ("POST", "/pause", {"json": {"for": "0"}}, 400, "not a duration"),
    ("POST", "/pause", {"json": {"for": "0m"}}, 400, "longer than zero"),
    ("PUT", "/schedule", {"json": {"cron": "* * * * *", "timezone": "00"}}, 400, "unknown IANA time zone"),
    ("GET", "/nope", {}, 404, "Not Found"),
    ("GET", "/runNow", {}, 405, "Method Not Allowed"),
    ("POST", "/pause", {"data": "x" * 70_000}, 413, "Too Large"),
]


async def test_bad_requests_get_4xx_json_and_change_nothing(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                            http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    for method, path, kwargs, code, words in BAD_REQUESTS:
        status, body = await get_json(http, method, svc.url + path, **kwargs)
        assert status == code, (method, path, body)
        assert set(body) == {"error"} and words in body["error"], (method, path, body)
        assert "Traceback" not in body["error"]
    status, st = await get_json(http, "GET", f"{svc.url}/status")
    assert st["paused"] is False and st["lastRun"] is None
    assert "Traceback" not in svc.stderr()


async def test_a_client_that_goes_away_mid_body_changes_nothing_and_logs_no_traceback(  # type: ignore[no-untyped-def]
        spawn, db_url: str, http: aiohttp.ClientSession) -> None:
    # Found outside the tests: a body cut short by the client was logged as an unexpected error.
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    port = int(svc.url.rsplit(":", 1)[1])
    for path in ("/pause", "/schedule"):
        method = "POST" if path == "/pause" else "PUT"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{".encode())
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
    await svc.wait_log("went away before its request was read", count=2)
    status, st = await get_json(http, "GET", f"{svc.url}/status")
    assert status == 200 and st["paused"] is False
    assert "Traceback" not in svc.stderr()


async def test_two_run_nows_at_once_one_runs_the_other_gets_409(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                                http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    async with row_locked(db_url) as conn:
        first = asyncio.create_task(get_json(http, "POST", f"{svc.url}/runNow"))
        await wait_until(lambda: _status_running(http, svc.url), message="the first run to be in progress")
        second = await get_json(http, "POST", f"{svc.url}/runNow")
        assert second[0] == 409 and "already running" in second[1]["error"]
        await conn.execute("SELECT 1")  # the first run is still waiting on our lock
        assert not first.done()
    status, row = await first
    assert status == 200 and row["id"] == 1
    status, body = await get_json(http, "GET", f"{svc.url}/runs")
    assert [r["status"] for r in body["runs"]] == ["succeeded"]


async def _status_running(http: aiohttp.ClientSession, url: str) -> bool:
    _, st = await get_json(http, "GET", f"{url}/status")
    return bool(st["running"])


def _non_loopback_address() -> str:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    pytest.skip("this machine has no non-loopback IPv4 address to call the service from")


async def test_without_a_token_only_loopback_clients_may_post(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                              http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, HOST="0.0.0.0").started()
    port = svc.url.rsplit(":", 1)[1]
    outside = f"http://{_non_loopback_address()}:{port}"
    for path in ("/runNow", "/pause", "/resume"):
        status, body = await get_json(http, "POST", outside + path)
        assert status == 401 and "loopback" in body["error"], (path, body)
    # Reading is open to all; nothing was changed by the refused calls.
    assert await get_json(http, "GET", f"{outside}/isRunning") == (200, {"message": "true"})
    status, body = await get_json(http, "GET", f"{outside}/runs")
    assert body["runs"] == []
    # The same calls from this machine's loopback are accepted.
    assert (await get_json(http, "POST", f"http://127.0.0.1:{port}/pause"))[0] == 200


TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN])
async def test_with_a_token_posts_need_it_even_from_loopback(spawn, db_url: str, http: aiohttp.ClientSession,  # type: ignore[no-untyped-def]
                                                             header: str | None) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, CONTROL_API_TOKEN=TOKEN).started()
    headers = {"Authorization": header} if header else {}
    for path in ("/runNow", "/pause", "/resume"):
        async with http.post(svc.url + path, headers=headers) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "bearer token" in (await resp.json())["error"]
    assert await get_json(http, "GET", f"{svc.url}/isRunning") == (200, {"message": "true"})
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert (await get_json(http, "POST", f"{svc.url}/runNow", headers=good))[0] == 200
    assert await get_json(http, "POST", f"{svc.url}/pause", headers=good) == (200, {"message": "ok"})
    await svc.stop()
    assert TOKEN not in svc.stderr() + svc.stdout()
