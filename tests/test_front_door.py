"""The front door holds: what a hostile or careless client can do gets a clear answer and changes
nothing — through the real process."""

from __future__ import annotations

import re

import aiohttp
import asyncpg

from bot.outbox import MAX_RETRY_AFTER_S, _retry_after
from tests.conftest import Spawner, get_json, run_cli, wait_until

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
