"""Jobs, plural: SQL files dropped in a folder are jobs beside foo, on every surface, with retries.

Real processes against a real PostgreSQL, as a user would run them: files in FOOJOB_JOBS_DIR,
then HTTP, the CLI and (in test_slack_jobs) Slack.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bot.catalogue import Defaults, load, sql_job
from bot.errors import ConfigError
from jobs import JOBS
from tests.conftest import Service, Spawner, WebhookSink, get_json, run_cli, wait_until
from tests.slack_sim import SlackSimulator
from tests.test_slack import acked, replies, start

EVERY_SECOND = "* * * * * *"
NEVER_SOON = "0 0 1 1 *"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


ROLLUP = """-- cron: {cron}
-- description: roll the events up
-- timezone: Europe/Paris
-- A plain comment line is allowed in the header.
CREATE TABLE IF NOT EXISTS rollup_log (n integer, at timestamptz DEFAULT now());
INSERT INTO rollup_log (n) SELECT count(*) FROM rollup_log RETURNING n, at, 1.50::numeric AS price, 'x' AS word;
"""

PURGE = """-- cron: {cron}
-- notify: changes
DELETE FROM foo WHERE id < 0;
"""


# -- the catalogue: one bad file stops start-up, naming file, line and problem -----------------------

@pytest.mark.parametrize(("name", "text", "line", "words"), [
    ("nocron.sql", "-- description: x\nSELECT 1;\n", 1, "no schedule"),
    ("badcron.sql", "-- cron: 61 * * * *\nSELECT 1;\n", 1, "minute: 61 is outside 0-59"),
    ("badvalue.sql", "-- cron: * * * * *\n\n-- timeout: 5x\nSELECT 1;\n", 3, "timeout: '5x' is not a duration"),
    ("badnotify.sql", "-- cron: * * * * *\n-- notify: sometimes\nSELECT 1;\n", 2, "notify: must be one of"),
    ("badretries.sql", "-- cron: * * * * *\n-- retries: 99\nSELECT 1;\n", 2, "retries: must be a whole number"),
    ("badzone.sql", "-- cron: * * * * *\n-- timezone: Mars/Olympus\nSELECT 1;\n", 2, "unknown IANA time zone"),
    ("unknown.sql", "-- cron: * * * * *\n-- cronn: * * * * *\nSELECT 1;\n", 2, "unknown key 'cronn'"),
    ("twice.sql", "-- cron: * * * * *\n-- cron: 0 * * * *\nSELECT 1;\n", 2, "given twice"),
    ("Bad_Name.sql", "-- cron: * * * * *\nSELECT 1;\n", 1, "is not a job name"),
    ("foo.sql", "-- cron: * * * * *\nSELECT 1;\n", 1, "the name 'foo' is taken by the python job"),
    ("late.sql", "-- cron: * * * * *\nSELECT 1;\n-- timeout: 5s\nSELECT 2;\n", 3, "comes after the SQL"),
    ("empty.sql", "-- cron: * * * * *\n-- only comments\n", 2, "no SQL statement"),
    ("begin.sql", "-- cron: * * * * *\nSELECT 1;\nBEGIN;\nSELECT 2;\n", 3, "BEGIN is not allowed"),
    ("setter.sql", "-- cron: * * * * *\nSET search_path = x;\n", 2, "use SET LOCAL"),
    ("set.sql", "-- cron: * * * * *\nSELECT 1;\n", 1, "cannot be a job's name"),
    ("open.sql", "-- cron: * * * * *\nSELECT 1;\nSELECT 'unterminated;\n", 3, "unterminated quoted string"),
])
def test_a_bad_job_file_is_refused_naming_file_line_and_problem(tmp_path: Path, name: str, text: str, line: int,
                                                               words: str) -> None:
    write(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        load(JOBS, lambda _: None, tmp_path, Defaults(), "foo")
    assert str(caught.value).startswith(f"{tmp_path / name}:{line}: "), str(caught.value)
    assert words in str(caught.value)


def test_a_bad_job_file_stops_start_up_with_exit_2_and_one_line(tmp_path: Path) -> None:
    write(tmp_path, "rollup.sql", "-- cron: 0 3 * * *\n-- retry-delay: soon\nSELECT 1;\n")
    result = run_cli("status", FOOJOB_JOBS_DIR=str(tmp_path), FOOJOB_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "rollup.sql:2: retry-delay:" in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()  # nothing started
    for env, variable in (({"FOOJOB_JOBS_DIR": str(tmp_path / "nowhere")}, "FOOJOB_JOBS_DIR"),
                          ({"FOOJOB_DEFAULT_JOB": "nightly"}, "FOOJOB_DEFAULT_JOB")):
        result = run_cli("status", **env)
        assert result.returncode == 2 and variable in result.stderr and result.stderr.count("\n") == 1


def test_the_header_gives_the_job_its_settings_and_the_variables_the_defaults(tmp_path: Path) -> None:
    spec = sql_job(write(tmp_path, "nightly-rollup.sql", "-- cron: 0 3 * * *\n-- timeout: 5m\n-- retries: 2\n"
                         "-- retry-delay: 10s\n-- channel: C0123ABCD\n-- notify: Failures\nSELECT 1;"),
                   Defaults(timeout=timedelta(minutes=1), notify="all"))
    assert (spec.name, spec.kind, spec.cron.text, spec.timezone.key) == ("nightly-rollup", "sql", "0 3 * * *", "UTC")
    assert (spec.timeout, spec.notify, spec.retries, spec.channel) == (timedelta(minutes=5), "failures", 2, "C0123ABCD")
    assert [spec.retry_after(n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (10, 20, 40)]
    default = sql_job(write(tmp_path, "plain.sql", "-- cron: 0 3 * * *\nSELECT 1"),
                      Defaults(timeout=timedelta(minutes=1), notify="changes"))
    assert (default.timeout, default.notify, default.retries) == (timedelta(minutes=1), "changes", 0)


# -- SQL jobs beside foo, over HTTP --------------------------------------------------------------------

async def _runs(db: asyncpg.Connection, job: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM foojob_runs WHERE job = $1", job))


async def test_sql_jobs_beside_foo_over_http(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                            http: aiohttp.ClientSession, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    write(folder, "rollup.sql", ROLLUP.format(cron=EVERY_SECOND))
    write(folder, "purge.sql", PURGE.format(cron=EVERY_SECOND))
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND, FOOJOB_JOBS_DIR=str(folder)).started()
    url = svc.url

    status, body = await get_json(http, "GET", f"{url}/jobs")
    assert status == 200 and [j["job"] for j in body["jobs"]] == ["foo", "purge", "rollup"]
    rollup = body["jobs"][2]
    assert (rollup["kind"], rollup["description"], rollup["timezone"]) == ("sql", "roll the events up", "Europe/Paris")
    assert body["jobs"][0]["kind"] == "python" and body["jobs"][1]["notify"] == "changes"
    for job in ("foo", "purge", "rollup"):
        await wait_until(lambda job=job: _runs(db, job), message=f"a scheduled run of {job}")

    # The result of an SQL job: the rows of its last statement, or its command tag.
    status, runs = await get_json(http, "GET", f"{url}/jobs/rollup/runs?limit=1")
    [run] = runs["runs"]
    assert run["job"] == "rollup" and run["status"] == "succeeded" and run["attempt"] == 1
    assert run["result"]["rowCount"] == 1
    [row] = run["result"]["rows"]
    assert row["price"] == 1.5 and row["word"] == "x" and isinstance(row["n"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+0[12]:00", row["at"])  # RFC 3339, Paris
    status, runs = await get_json(http, "GET", f"{url}/jobs/purge/runs?limit=5")
    assert {r["job"] for r in runs["runs"]} == {"purge"} and runs["runs"][0]["result"] == {"command": "DELETE 0"}
    status, every = await get_json(http, "GET", f"{url}/runs?limit=100")
    assert {r["job"] for r in every["runs"]} == {"foo", "purge", "rollup"}  # /runs: every job's

    # Pause one: the others keep firing.
    assert (await get_json(http, "POST", f"{url}/jobs/rollup/pause", json={"reason": "deploy"}))[0] == 200
    status, job = await get_json(http, "GET", f"{url}/jobs/rollup")
    assert job["paused"] and job["pauseReason"] == "deploy" and job["nextRunAt"] is None
    paused_at = await _runs(db, "rollup")
    foo_before, purge_before = await _runs(db, "foo"), await _runs(db, "purge")
    await wait_until(lambda: _more(db, "foo", foo_before + 2), message="foo going on")
    await wait_until(lambda: _more(db, "purge", purge_before + 2), message="purge going on")
    assert await _runs(db, "rollup") <= paused_at + 1  # a fire already under way at the pause, at most
    status, v1 = await get_json(http, "GET", f"{url}/status")
    assert v1["job"] == "foo" and not v1["paused"]  # the version 1 endpoints act on foo

    # Run-now, schedule and skip of one job.
    status, result = await get_json(http, "POST", f"{url}/jobs/rollup/runNow")
    assert status == 200 and result["rowCount"] == 1
    status, schedule = await get_json(http, "PUT", f"{url}/jobs/purge/schedule", json={"cron": "0 4 * * *"})
    assert status == 200 and schedule["job"] == "purge" and schedule["cron"] == "0 4 * * *"
    status, foo_schedule = await get_json(http, "GET", f"{url}/schedule")
    assert foo_schedule["cron"] == EVERY_SECOND
    status, skipped = await get_json(http, "POST", f"{url}/jobs/purge/skip")
    assert status == 200 and skipped["skipped"].startswith(str(datetime.now(UTC).year)[:2])
    assert (await get_json(http, "DELETE", f"{url}/jobs/purge/schedule"))[1]["cron"] == EVERY_SECOND

    # An unknown job: 404 naming it, everywhere.
    for method, path in (("GET", "/jobs/nightly"), ("POST", "/jobs/nightly/pause"), ("GET", "/jobs/nightly/runs"),
                         ("GET", "/runs?job=nightly"), ("GET", "/status?job=nightly")):
        status, answer = await get_json(http, method, url + path)
        assert status == 404 and "nightly" in answer["error"], (path, answer)
    assert await svc.stop() == 0


async def _more(db: asyncpg.Connection, job: str, count: int) -> bool:
    return await _runs(db, job) >= count


async def test_an_sql_job_is_rolled_back_whole_when_a_statement_fails(spawn: Spawner, db_url: str,
                                                                      db: asyncpg.Connection,
                                                                      http: aiohttp.ClientSession,
                                                                      tmp_path: Path) -> None:
    await db.execute("CREATE TABLE kept (n integer)")
    write(tmp_path, "half.sql", f"-- cron: {NEVER_SOON}\nINSERT INTO kept VALUES (1);\n"
                                "INSERT INTO kept VALUES (1 / 0);\nINSERT INTO kept VALUES (3);\n")
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_JOBS_DIR=str(tmp_path),
                               FOOJOB_DEFAULT_JOB="half").started()
    status, answer = await get_json(http, "POST", f"{svc.url}/runNow")  # FOOJOB_DEFAULT_JOB=half
    assert status == 500 and "division by zero" in answer["error"]
    assert await db.fetchval("SELECT count(*) FROM kept") == 0  # the first insert went with the rest
    run = await db.fetchrow("SELECT * FROM foojob_runs")
    assert run["job"] == "half" and run["status"] == "failed"
    assert await svc.stop() == 0


# -- the CLI -------------------------------------------------------------------------------------------

async def test_the_cli_without_the_services_jobs_folder_refuses_its_jobs(spawn: Spawner, db_url: str,
                                                                        db: asyncpg.Connection,
                                                                        tmp_path: Path) -> None:
    # The service runs rollup from its folder; a CLI started elsewhere does not have the file.
    # `pause rollup 1h` must not pause foo "until resumed" with the reason "rollup 1h".
    write(tmp_path, "rollup.sql", ROLLUP.format(cron="0 3 * * *"))
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_JOBS_DIR=str(tmp_path)).started()
    assert await svc.stop() == 0
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    env = {"DATABASE_URL": db_url, "FOOJOB_JOBS_DIR": str(elsewhere)}
    for args in (("pause", "rollup", "1h"), ("status", "--job", "rollup"), ("resume", "rollup")):
        refused = run_cli(*args, **env)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "'rollup' is a job of the service, but not of this command" in refused.stderr
        assert "FOOJOB_JOBS_DIR" in refused.stderr
    assert not await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused")
    assert run_cli("pause", "deploy", **env).returncode == 0  # a plain reason is still foo's reason
    assert await db.fetchval("SELECT pause_reason FROM foojob_job_state WHERE job = 'foo'") == "deploy"


async def test_the_cli_lists_the_jobs_and_takes_job_anywhere(db_url: str, db: asyncpg.Connection,
                                                            tmp_path: Path) -> None:
    write(tmp_path, "rollup.sql", ROLLUP.format(cron="0 3 * * *"))
    env = {"DATABASE_URL": db_url, "FOOJOB_JOBS_DIR": str(tmp_path)}
    listed = run_cli("jobs", **env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("foo (python) active") and lines[1].startswith("rollup (sql) active")
    assert "roll the events up" in lines[1]
    as_json = json.loads(run_cli("jobs", "--json", **env).stdout)
    assert [j["job"] for j in as_json["jobs"]] == ["foo", "rollup"] and as_json["jobs"][1]["kind"] == "sql"

    # Options anywhere; the job named by --job and no other.
    changed = run_cli("schedule", "set", "--job", "rollup", "*/6", "*", "*", "*", "*", "*", **env)
    assert changed.returncode == 0, changed.stderr
    assert await db.fetchval("SELECT cron FROM foojob_job_state WHERE job = 'rollup'") == "*/6 * * * * *"
    paused = run_cli("pause", "2h", "--job", "rollup", "maintenance", **env)
    assert paused.returncode == 0 and paused.stdout.startswith("rollup paused until"), paused.stderr
    state = await db.fetchrow("SELECT paused, pause_reason FROM foojob_job_state WHERE job = 'rollup'")
    assert state["paused"] and state["pause_reason"] == "maintenance"
    assert not await db.fetchval("SELECT paused FROM foojob_job_state WHERE job = 'foo'")
    reset = run_cli("schedule", "reset", "--job", "rollup", **env)
    assert f"configured ({tmp_path / 'rollup.sql'})" in reset.stdout or "configured (" in reset.stdout
    assert "FOOJOB_CRON" not in reset.stdout  # the file configures rollup, not foo's variable
    unknown = run_cli("status", "--job", "nightly", **env)
    assert unknown.returncode == 2 and "unknown job 'nightly'" in unknown.stderr


# -- a changed header is a deploy of that job only; a new job missed nothing ------------------------------

async def test_a_changed_header_is_a_deploy_of_that_job_only(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                            webhook: WebhookSink, tmp_path: Path) -> None:
    write(tmp_path, "rollup.sql", ROLLUP.format(cron="0 3 * * *"))
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON, "FOOJOB_JOBS_DIR": str(tmp_path),
           "SLACK_WEBHOOK_URL": webhook.url}
    first = await spawn(**env).started()
    assert await first.stop() == 0
    write(tmp_path, "rollup.sql", ROLLUP.format(cron="30 4 * * *"))
    second = await spawn(**env).started()
    await second.wait_log(r"the configured schedule of rollup changed \(a deploy\)")
    events = await db.fetch("SELECT job, action, actor FROM foojob_control_events ORDER BY id")
    assert [(e["job"], e["action"], e["actor"]) for e in events] == [("rollup", "schedule-deploy", "deploy")]
    row = await db.fetchrow("SELECT cron, timezone, schedule_source FROM foojob_job_state WHERE job = 'rollup'")
    assert tuple(row) == ("30 4 * * *", "Europe/Paris", "config")
    await wait_until(lambda: any("rollup's schedule was changed by a deploy" in t for t in webhook.texts()),
                     message="the deploy announced")
    assert not any("foo's schedule" in t for t in webhook.texts())
    assert await second.stop() == 0


async def test_a_job_added_by_a_deploy_reports_no_gap(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                     webhook: WebhookSink, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": EVERY_SECOND, "FOOJOB_JOBS_DIR": str(folder),
           "SLACK_WEBHOOK_URL": webhook.url, "FOOJOB_NOTIFY": "failures"}
    first = await spawn(**env).started()
    await wait_until(lambda: _runs(db, "foo"), message="a run of foo")
    assert await first.stop() == 0
    stopped = await db.fetchval("SELECT max(stopped_at) FROM foojob_replicas")
    write(folder, "bar.sql", f"-- cron: {EVERY_SECOND}\nSELECT 1 AS one;\n")
    await wait_until(lambda: datetime.now(UTC) > stopped + timedelta(seconds=3), message="three fires to pass")
    second = await spawn(**env).started()
    await wait_until(lambda: any("foo: no replica was up" in t for t in webhook.texts()), message="foo's gap")
    await wait_until(lambda: _runs(db, "bar"), message="bar running")
    assert not any("bar: no replica was up" in t for t in webhook.texts())  # bar did not exist then
    assert await db.fetchval("SELECT count(*) FROM foojob_missed WHERE job = 'bar'") == 0
    assert await second.stop() == 0


# -- retries ---------------------------------------------------------------------------------------------

FLAKY = """-- cron: {cron}
-- retries: 2
-- retry-delay: 1s
-- notify: {notify}
INSERT INTO attempts (at) VALUES (clock_timestamp());
SELECT 1 / (SELECT count(*) FROM healthy)::integer AS ok;
"""


async def _prepare_flaky(db: asyncpg.Connection) -> None:
    await db.execute("CREATE TABLE attempts (at timestamptz); CREATE TABLE healthy (x int)")


async def _fire_runs(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM foojob_runs WHERE job = 'flaky' ORDER BY scheduled_for, attempt")


async def test_a_failed_fire_is_tried_again_once_per_attempt_across_replicas(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, webhook: WebhookSink, tmp_path: Path) -> None:
    await _prepare_flaky(db)
    # A fire every 15 s: one fire per phase of the test, with room for its retries.
    write(tmp_path, "flaky.sql", FLAKY.format(cron="*/15 * * * * *", notify="all"))
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON, "FOOJOB_JOBS_DIR": str(tmp_path),
           "SLACK_WEBHOOK_URL": webhook.url, "FOOJOB_ALERT_AFTER": "1"}
    replicas = [await spawn(**env).started(), await spawn(**env).started()]

    # The first fire fails three times: attempts 1, 2, 3, each once, the delays doubling; one failure
    # message (the alert: FOOJOB_ALERT_AFTER=1 counts the fire's last attempt only).
    runs = await wait_until(lambda: _attempts_done(db, 3), timeout=25, message="three attempts of a fire")
    fire = runs[0]["scheduled_for"]
    assert [(r["trigger"], r["attempt"], r["scheduled_for"], r["status"]) for r in runs] == [
        ("schedule", 1, fire, "failed"), ("retry", 2, fire, "failed"), ("retry", 3, fire, "failed")]
    gaps = [(b["started_at"] - a["finished_at"]).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
    assert 1.0 <= gaps[0] < 3.0 and 2.0 <= gaps[1] < 5.0 and gaps[1] - gaps[0] >= 0.5, gaps
    assert await db.fetchval("SELECT count(*) FROM attempts") == 0  # each failed attempt rolled back whole
    await wait_until(lambda: any("flaky has failed 1 times in a row" in t for t in webhook.texts()),
                     message="the alert of the last attempt")
    flaky_texts = [t for t in webhook.texts() if "flaky" in t]
    assert len(flaky_texts) == 1 and "attempt 3" in flaky_texts[0], flaky_texts

    # The next fire fails once, then succeeds: nothing posted for the failed attempt; the success
    # is the recovery of the streak.
    await wait_until(lambda: _attempts_of_next_fire(db, fire, 1), timeout=20, message="the next fire's first attempt")
    await db.execute("INSERT INTO healthy VALUES (1)")
    runs = await wait_until(lambda: _attempts_of_next_fire(db, fire, 2), timeout=10, message="its second attempt")
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed"), (2, "succeeded")]
    await wait_until(lambda: any("flaky recovered" in t for t in webhook.texts()), message="the recovery")
    assert len([t for t in webhook.texts() if "flaky" in t]) == 2
    assert await db.fetchval("SELECT count(*) FROM foojob_retries") == 0
    for svc in replicas:
        assert await svc.stop() == 0


async def _attempts_done(db: asyncpg.Connection, n: int) -> list[asyncpg.Record] | None:
    runs = await _fire_runs(db)
    return runs if len(runs) >= n and runs[n - 1]["finished_at"] is not None else None


async def _attempts_of_next_fire(db: asyncpg.Connection, after: datetime, n: int) -> list[asyncpg.Record] | None:
    runs = [r for r in await _fire_runs(db) if r["scheduled_for"] > after]
    fires = {r["scheduled_for"] for r in runs}
    if not fires:
        return None
    first = min(fires)
    mine = [r for r in runs if r["scheduled_for"] == first]
    return mine if len(mine) >= n else None


async def test_a_pending_retry_survives_its_replica_and_a_pause_cancels_it(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, webhook: WebhookSink, tmp_path: Path,
        http: aiohttp.ClientSession) -> None:
    await _prepare_flaky(db)
    write(tmp_path, "flaky.sql", FLAKY.format(cron="*/15 * * * * *", notify="failures").replace(
        "retry-delay: 1s", "retry-delay: 4s"))
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON, "FOOJOB_JOBS_DIR": str(tmp_path),
           "SLACK_WEBHOOK_URL": webhook.url}
    first = await spawn(**env).started()
    pending = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_retries"), timeout=25,
                               message="a pending retry")
    first.kill()  # dies with its retry pending: the retry lives in the database, not in the process
    await db.execute("INSERT INTO healthy VALUES (1)")
    second = await spawn(**env).started()
    made = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_runs WHERE trigger = 'retry'"), timeout=15,
                            message="the retry made by the other replica")
    assert (made["attempt"], made["status"], made["scheduled_for"]) == (2, "succeeded", pending["scheduled_for"])
    assert made["started_at"] >= pending["due_at"] - timedelta(milliseconds=50)
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'retry'") == 1
    # notify: failures, and the fire succeeded on its retry: nothing was posted for it.
    # (A run's message is written in its own transaction: none was, for either attempt.)
    assert not await db.fetchval("SELECT count(*) FROM foojob_outbox WHERE payload->>'text' LIKE '%flaky%'")

    # A pause cancels the pending retries: the attempt is never made.
    await db.execute("DELETE FROM healthy")
    cancelled = await wait_until(lambda: db.fetchrow("SELECT * FROM foojob_retries"), timeout=20,
                                 message="a failed fire's retry pending")
    status, _ = await get_json(http, "POST", f"{second.url}/jobs/flaky/pause")
    assert status == 200 and await db.fetchval("SELECT count(*) FROM foojob_retries") == 0
    await second.wait_log(r"flaky paused by http; 1 pending retry cancelled")
    await wait_until(lambda: datetime.now(UTC) > cancelled["due_at"] + timedelta(seconds=2), timeout=10,
                     message="the cancelled attempt's time to pass")
    assert not await db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for = $1 AND attempt = $2",
                                 cancelled["scheduled_for"], cancelled["attempt"])
    assert await second.stop() == 0


async def test_run_now_is_never_retried(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                        http: aiohttp.ClientSession, tmp_path: Path) -> None:
    await _prepare_flaky(db)
    write(tmp_path, "flaky.sql", FLAKY.format(cron=NEVER_SOON, notify="all"))
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_JOBS_DIR=str(tmp_path)).started()
    status, answer = await get_json(http, "POST", f"{svc.url}/jobs/flaky/runNow")
    assert status == 500 and "division by zero" in answer["error"]
    assert await db.fetchval("SELECT count(*) FROM foojob_retries") == 0
    [run] = await _fire_runs(db)
    assert (run["trigger"], run["attempt"], run["retried"]) == ("manual", 1, False)
    assert await svc.stop() == 0


# -- Slack ------------------------------------------------------------------------------------------------

async def _manual_runs_of_both(db: asyncpg.Connection) -> bool:
    return await db.fetchval("SELECT count(DISTINCT job) FROM foojob_runs WHERE trigger = 'manual'") == 2


async def test_slack_names_the_job_after_the_verb(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                  db: asyncpg.Connection, tmp_path: Path) -> None:
    write(tmp_path, "rollup.sql", ROLLUP.format(cron="0 3 * * *"))
    write(tmp_path, "purge.sql", PURGE.format(cron="0 4 * * *"))
    await start(spawn, slack, db_url, FOOJOB_JOBS_DIR=str(tmp_path))

    # status without a job: a block per job, each with that job's buttons.
    env = await slack.command("status")
    [reply] = await replies(slack, env)
    assert all(job in reply["text"] for job in ("foo is active", "purge is active", "rollup is active"))
    values = [(e["action_id"], e["value"]) for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert values == [(action, job) for job in ("foo", "purge", "rollup")
                      for action in ("foojob_pause", "foojob_run_now")]

    # Each job's button on that one message acts for its job (not "already taken care of").
    for job in ("purge", "rollup"):
        await slack.click("foojob_run_now", job, message_ts="1700000000.000200")
    await wait_until(lambda: db.fetchval("SELECT count(DISTINCT job) FROM foojob_runs WHERE trigger = 'manual'"),
                     message="the first click's run")
    await wait_until(lambda: _manual_runs_of_both(db), message="a run of each job")

    # A changing verb without a job changes nothing and says which jobs there are.
    env = await slack.command("pause 2h deploy")
    ack = await acked(slack, env)
    assert "Which job?" in ack["text"] and "`rollup`" in ack["text"] and ack["response_type"] == "ephemeral"
    assert not await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused")

    # The job right after the verb.
    env = await slack.command("pause rollup 2h deploy")
    await replies(slack, env)
    state = await db.fetchrow("SELECT paused, pause_reason, resume_at FROM foojob_job_state WHERE job = 'rollup'")
    assert state["paused"] and state["pause_reason"] == "deploy" and state["resume_at"] is not None
    assert await db.fetchval("SELECT count(*) FROM foojob_job_state WHERE paused") == 1
    env = await slack.command("run-now purge")
    assert "Running purge" in (await acked(slack, env))["text"]
    [reply] = await replies(slack, env)
    assert "purge succeeded" in reply["text"] and "DELETE 0" in reply["text"]
    env = await slack.command("history purge")
    [reply] = await replies(slack, env)
    assert "*purge* :large_green_square::large_green_square:" in reply["blocks"][0]["text"]["text"]
    assert "Last 2 run(s) of purge" in reply["blocks"][1]["text"]["text"]  # the click's and the command's
    env = await slack.command("history")
    [reply] = await replies(slack, env)
    # A strip per job, then every job's last runs, each line naming its job.
    assert [b["text"]["text"].split()[0] for b in reply["blocks"][:3]] == ["*foo*", "*purge*", "*rollup*"]
    assert "every job" in reply["text"] and "*purge* #" in reply["blocks"][4]["text"]["text"]
    env = await slack.command("schedule rollup set 0 6 * * *")
    [reply] = await replies(slack, env)
    assert "New schedule for rollup" in reply["blocks"][0]["text"]["text"]
    env = await slack.command("next")
    [reply] = await replies(slack, env)
    assert all(f"*{job}*" in reply["text"] for job in ("foo", "purge", "rollup"))
    env = await slack.command("status nightly")
    ack = await acked(slack, env)
    assert "no job is named `nightly`" in ack["text"]


VALUES = """-- cron: 0 0 1 1 *
SET LOCAL search_path = pg_catalog;  -- the run is still recorded in foojob's tables afterwards
SELECT 1 AS a, 2 AS a, interval '-1 hour' AS i, interval '1 day 2 hours' AS d, 'infinity'::timestamptz AS t,
       'NaN'::float8 AS f, int4range(1, 5) AS r, B'101' AS b, 12345678901234567890::numeric AS big,
       1.5::numeric AS half, 0.1::numeric AS tenth, 1.00000000000000000001::numeric AS fine, true AS yes,
       NULL AS nothing, '{"k": [1]}'::jsonb AS j, repeat('x', 5000) AS long, n
FROM generate_series(1, 25) AS n;
"""


async def test_an_sql_jobs_values_as_the_contract_says(spawn: Spawner, db_url: str, http: aiohttp.ClientSession,
                                                        db: asyncpg.Connection, tmp_path: Path) -> None:
    write(tmp_path, "values.sql", VALUES)
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_JOBS_DIR=str(tmp_path)).started()
    status, result = await get_json(http, "POST", f"{svc.url}/jobs/values/runNow")
    assert status == 200, result
    assert result["rowCount"] == 25 and len(result["rows"]) == 20
    row = result["rows"][0]
    long = row.pop("long")
    assert len(long) == 1000 and long.endswith("…")
    assert row == {"a": 1, "a_2": 2, "i": "-01:00:00", "d": "1 day 02:00:00", "t": "infinity", "f": "NaN",
                   "r": "[1,5)", "b": "101", "big": 12345678901234567890, "half": 1.5, "tenth": 0.1,
                   "fine": "1.00000000000000000001", "yes": True, "nothing": None, "j": {"k": [1]}, "n": 1}
    assert await db.fetchval("SELECT status FROM foojob_runs WHERE job = 'values'") == "succeeded"
    assert await svc.stop() == 0


async def test_a_pending_retry_of_a_job_that_is_gone_is_left_alone(spawn: Spawner, db_url: str,
                                                                  db: asyncpg.Connection) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    await db.execute("INSERT INTO foojob_retries VALUES ('gone', now(), 2, now())")
    await db.execute("NOTIFY foojob_retry, 'gone'")
    await svc.wait_log(r"pending retries of gone, which is no job here")
    assert await db.fetchval("SELECT count(*) FROM foojob_retries") == 1  # for a replica that has it
    assert await svc.stop() == 0
    assert "Traceback" not in svc.stderr() and svc.stderr().count("which is no job here") == 1
