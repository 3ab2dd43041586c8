"""The front door holds: what a hostile or careless client can do gets a clear answer and changes
nothing — through the real process."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import aiohttp
import asyncpg

from bot.outbox import MAX_RETRY_AFTER_S, _retry_after
from tests.conftest import ROOT, Spawner, get_json, run_cli, service_env, wait_until

NEVER_SOON = "0 0 1 1 *"


async def test_a_forged_newline_stays_on_one_log_line(spawn: Spawner, db_url: str,
                                                      http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, LOG_FORMAT="text").started()
    forged = "deploy\n2026-11-26 22:00:00,000 CRITICAL bot: foojob: the database was dropped"
    assert (await get_json(http, "POST", f"{svc.url}/pause", json={"reason": forged}))[0] == 200
    await svc.wait_log(r"foo paused by http")
    assert await svc.stop() == 0
    lines = svc.stderr().splitlines()
    assert not any(line.startswith("2026-11-26 22:00:00,000 CRITICAL") for line in lines)
    [paused] = [line for line in lines if "foo paused by http" in line]
    assert "deploy\\n2026-11-26 22:00:00,000 CRITICAL" in paused


async def test_times_for_people_have_no_fractions_and_stdout_shows_text_as_typed(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    assert (await get_json(http, "POST", f"{svc.url}/pause",
                           json={"for": "2h", "reason": "<!channel> & friends"}))[0] == 200
    await wait_until(lambda: "paused by" in svc.stdout(), message="the pause on stdout")
    assert await svc.stop() == 0
    [line] = [line for line in svc.stdout().splitlines() if "paused by" in line]
    assert "<!channel> & friends" in line and "&lt;" not in line  # a terminal is not Slack
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", line), line  # no fractions of a second
    cli = run_cli("status", DATABASE_URL=db_url)
    assert cli.returncode == 0 and "PAUSED" in cli.stdout
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", cli.stdout.split("last run")[0]), cli.stdout


def test_a_huge_retry_after_is_capped_then_asked_again() -> None:
    # One 429 with Retry-After: 9999 must not hold every message for hours.
    assert _retry_after("9999") == MAX_RETRY_AFTER_S == 60.0
    assert _retry_after("7") == 7.0
    assert _retry_after("soon") == 30.0


def _few_descriptors() -> None:  # in the service's process, before it starts
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


async def test_a_thousand_idle_connections_cannot_starve_it(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                           http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON="* * * * * *", preexec_fn=_few_descriptors).started()
    port = int(svc.url.rsplit(":", 1)[1])
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(1000):  # idle sockets that never send a byte
            with contextlib.suppress(OSError):
                idle.append(await asyncio.open_connection("127.0.0.1", port))
        runs_before = await db.fetchval("SELECT count(*) FROM foojob_runs")
        # With them all attempted: the service answers, and the schedule still fires.
        status, health = await get_json(http, "GET", f"{svc.url}/healthz")
        assert status == 200 and health["database"] == "ok"
        await wait_until(lambda: _more_runs(db, runs_before + 2), timeout=10, message="two more runs")
        # The idle ones are closed by the service within a few seconds (header timeout).
        await wait_until(lambda: _closed_by_peer(idle) > len(idle) * 0.9, timeout=15,
                         message="the idle connections closed by the service")
    finally:
        for _, writer in idle:
            writer.close()
    assert (await get_json(http, "GET", f"{svc.url}/healthz"))[0] == 200
    assert await svc.stop() == 0
    log = svc.stderr()
    print(f"\n{len(idle)} idle connections opened; service log: {len(log.splitlines())} lines, {len(log)} bytes")
    assert len(log) < 100_000 and "Traceback" not in log
    assert log.count("refused a connection") <= 2 and log.count("sent no complete request headers") <= 2


async def test_idle_keep_alive_connections_cannot_lock_the_door(spawn: Spawner, db_url: str,
                                                                 http: aiohttp.ClientSession) -> None:
    # 100 clients (the cap is 64 under this limit) each make one complete request and then hold
    # their keep-alive connection idle: the one that has waited longest makes way for a new client.
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, preexec_fn=_few_descriptors).started()
    port = int(svc.url.rsplit(":", 1)[1])
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # answered; now it idles
                held.append((reader, writer))
        for _ in range(10):  # every new client gets in
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as fresh:
                status, health = await get_json(fresh, "GET", f"{svc.url}/healthz")
                assert status == 200 and health["database"] == "ok"
    finally:
        for _, writer in held:
            writer.close()
    assert "closed the idle keep-alive connection that had waited longest" in svc.stderr()
    assert await svc.stop() == 0


async def _more_runs(db: asyncpg.Connection, at_least: int) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM foojob_runs") >= at_least)


def _closed_by_peer(connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> int:
    return sum(1 for reader, writer in connections if reader.at_eof() or writer.transport.is_closing())


async def test_host_colon_colon_listens_on_ipv6_and_ipv4(spawn: Spawner, db_url: str,
                                                        http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:  # a free port: PORT=0 would give each family its own
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    svc = spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, HOST="::", PORT=str(port))
    await svc.wait_log(r"scheduled foo", timeout=20)
    for url in (f"http://127.0.0.1:{port}/healthz", f"http://[::1]:{port}/healthz"):
        assert (await get_json(http, "GET", url))[0] == 200, url
    assert await svc.stop() == 0


async def test_no_web_page_can_act_without_a_token(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                  http: aiohttp.ClientSession) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    forged = [  # DNS rebinding: the page's own name in Host; CSRF: a page elsewhere, in Origin
        {"Host": "attacker.example", "Origin": "http://attacker.example", "Content-Type": "text/plain"},
        {"Host": "attacker.example"},
        {"Origin": "http://attacker.example", "Content-Type": "text/plain"},
        {"Origin": "null"},
        {"Origin": "http://localhost:3000", "Host": "localhost"},  # another port is another site
    ]
    for headers in forged:
        for method, path, body in (("POST", "/pause", '{"for": "366d"}'), ("POST", "/runNow", ""),
                                   ("PUT", "/schedule", '{"cron": "* * * * * *"}'), ("POST", "/skip", "")):
            status, answer = await get_json(http, method, f"{svc.url}{path}", data=body, headers=headers)
            assert status == 403 and "web page" in answer["error"], (headers, path, status, answer)
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 0
    assert not await db.fetchval("SELECT coalesce(bool_or(paused), false) FROM foojob_job_state")
    assert await db.fetchval("SELECT count(*) FROM foojob_control_events") == 0
    # curl as the README shows it, and a page of this very address, still work.
    assert (await get_json(http, "POST", f"{svc.url}/pause", data='{"for": "1h"}'))[0] == 200
    port = svc.url.rsplit(":", 1)[1]
    same = {"Origin": f"http://127.0.0.1:{port}"}
    assert (await get_json(http, "POST", f"{svc.url}/resume", headers=same))[0] == 200
    local = {"Host": f"localhost:{port}"}
    assert (await get_json(http, "POST", f"{svc.url}/resume", headers=local))[0] == 200
    assert await svc.stop() == 0
async def test_a_slack_token_slack_refuses_stops_start_up_naming_it(spawn: Spawner, db_url: str) -> None:
    from tests.slack_sim import APP_TOKEN, BOT_TOKEN, SlackSimulator

    sim = await SlackSimulator().start()
    try:
        cases = (("SLACK_BOT_TOKEN", {"SLACK_BOT_TOKEN": "xoxb-revoked-0000", "SLACK_APP_TOKEN": APP_TOKEN}),
                 ("SLACK_APP_TOKEN", {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": "xapp-1-wrong"}))
        for variable, tokens in cases:
            svc = spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_API_URL=sim.api_url, **tokens)
            assert await svc.wait_exit(timeout=20) == 2, svc.stderr()
            [line] = [x for x in svc.stderr().splitlines() if "configuration error" in x]
            assert f"{variable}: Slack refused this token (invalid_auth)" in line
            assert "Traceback" not in svc.stderr() and "revoked-0000" not in svc.stderr()
            assert "Slack control surface on" not in svc.stderr()
    finally:
        await sim.stop()




async def test_a_database_url_that_can_never_work_stops_start_up_at_once_naming_it(pg_server: str) -> None:
    from tests.conftest import with_database

    missing = with_database(pg_server, "no_such_database_here")
    cases = [(missing, "/no_such_database_here", "does not exist"),
             ("postgresql://postgres:SECRETPW@no-such-host.invalid:5432/jobs", "no-such-host.invalid:5432/jobs",
              "unknown host")]
    if "host=" not in pg_server:  # a TCP server (CI's): a parameter the server does not know
        cases.append((pg_server + "?no_such_setting=1", "/postgres", "no_such_setting"))
    # sslmode=require against a server without SSL: it answers the SSL request "N", as PostgreSQL
    # built or configured without SSL does (the machine's own server offers SSL).
    plain = socket.create_server(("127.0.0.1", 0))
    port = plain.getsockname()[1]

    def no_ssl() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = plain.accept()
                with conn:
                    if conn.recv(8)[4:8] == b"\x04\xd2\x16\x2f":  # SSLRequest
                        conn.sendall(b"N")
                    conn.recv(1024)

    threading.Thread(target=no_ssl, daemon=True).start()
    cases.append((f"postgresql://postgres@127.0.0.1:{port}/jobs?sslmode=require", f"127.0.0.1:{port}/jobs",
                  "does not offer SSL"))
    for dsn, target, reason in cases:
        started = time.monotonic()
        result = run_cli(DATABASE_URL=dsn, LOG_LEVEL="WARNING")  # the service
        took = time.monotonic() - started
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and took < 10, (dsn, result.returncode, took, result.stderr)
        assert len(lines) == 1 and target in lines[0] and reason in lines[0], lines
        assert "SECRETPW" not in result.stderr and "Traceback" not in result.stderr
        cli = run_cli("status", DATABASE_URL=dsn)  # the CLI alike
        assert cli.returncode == 1 and target in cli.stderr and len(cli.stderr.strip().splitlines()) == 1


async def test_the_cli_never_shows_a_traceback_for_what_a_user_can_do(db_url: str) -> None:
    env = service_env(DATABASE_URL=db_url)
    piped = await asyncio.to_thread(
        subprocess.run, f"{sys.executable} -m bot history -n 100 | head -c 10; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert piped.returncode == 0 and b"Traceback" not in piped.stderr and piped.stderr == b"", piped.stderr
    bad = await asyncio.to_thread(subprocess.run, [sys.executable.encode(), b"-m", b"bot", b"pause", b"\xff\xfe"],
                                  cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.decode().strip() == "foojob: an argument is not valid UTF-8 text"


async def test_slack_unreachable_is_one_warning_line_an_attempt(spawn: Spawner, db_url: str,
                                                               http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_BOT_TOKEN="xoxb-1-token",
                      SLACK_APP_TOKEN="xapp-1-token", SLACK_API_URL=f"http://127.0.0.1:{closed}/api/",
                      LOG_LEVEL="INFO").started()
    await svc.wait_log(r"WARNING bot.slack.bolt: Failed to connect", count=2, timeout=30)
    status, health = await get_json(http, "GET", f"{svc.url}/healthz")
    assert status == 200 and health["slack"] == "disconnected"  # 503 only after a minute down
    assert await svc.stop() == 0
    log = svc.stderr()
    assert "Traceback" not in log and "ERROR" not in log
    assert "Slack cannot be reached" in log


async def test_malformed_http_is_one_log_line_a_minute_not_a_traceback_each(spawn: Spawner, db_url: str) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    port = int(svc.url.rsplit(":", 1)[1])
    for bad in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
                b"POST /pause HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") * 10:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(bad)
        await writer.drain()
        answer = await reader.read(200)
        writer.close()
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer) and b"application/json" in answer, answer
    assert await svc.stop() == 0
    log = svc.stderr()
    assert "Traceback" not in log
    assert sum("aiohttp.server" in line for line in log.splitlines()) <= 2
