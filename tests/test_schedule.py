"""The schedule lives in PostgreSQL: set, reset and skip from every surface, followed by every
replica within a second, kept across restarts, taken over by a deploy — on the real PostgreSQL,
real processes and the Slack simulator."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from bot.control import Control
from bot.db import Queries
from bot.errors import BadInput, Conflict
from tests.conftest import Service, Spawner, WebhookSink, catalogue, get_json, run_cli, wait_until
from tests.slack_sim import SlackSimulator
from tests.test_control import TZ, Core, core  # noqa: F401 - the fixture
from tests.test_slack import acked, button_ids, replies, start

NEVER_SOON = "0 0 1 1 *"
EVERY_SECOND = "* * * * * *"


async def events(db: asyncpg.Connection) -> list[tuple[str, str | None, dict[str, object] | None]]:
    rows = await db.fetch("SELECT action, actor, detail FROM foojob_control_events ORDER BY id")
    return [(r["action"], r["actor"], r["detail"]) for r in rows]


async def state_row(db: asyncpg.Connection) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM foojob_job_state WHERE job = 'foo'")


# -- the core -----------------------------------------------------------------------------------

async def test_first_start_remembers_the_configured_schedule_and_a_runtime_one_survives(
        core: Core, db: asyncpg.Connection, webhook: WebhookSink) -> None:  # noqa: F811
    first = await core.control.reconcile("foo")
    assert (first.cron, first.timezone, first.source, first.set_by) == ("*/3 * * * * *", TZ.key, "config", None)
    assert await events(db) == []  # a first start is no change

    new = await core.control.set_schedule("foo", "0  6 * * 1-5", "Asia/Tokyo", by="U0ALICE")
    assert (new.cron, new.timezone, new.source, new.set_by) == ("0 6 * * 1-5", "Asia/Tokyo", "runtime", "U0ALICE")
    # The same configured schedule at the next start: the runtime one stays.
    again = await core.control.reconcile("foo")
    assert (again.cron, again.source, again.version) == ("0 6 * * 1-5", "runtime", new.version)
    [(action, actor, detail)] = await events(db)
    assert action == "schedule-set" and actor == "U0ALICE"
    assert detail == {"old": {"cron": "*/3 * * * * *", "timezone": TZ.key, "source": "config"},
                      "new": {"cron": "0 6 * * 1-5", "timezone": "Asia/Tokyo", "source": "runtime"}}
    # Announced: who, old → new, the next three fires (in words, whole seconds).
    await wait_until(lambda: webhook.received, message="the announcement")
    text = webhook.received[0]["text"]
    assert "<@U0ALICE>" in text and "*/3 * * * * *" in text and "0 6 * * 1-5" in text
    assert text.count(" JST") == 3 and "." not in text.split("next:")[1]

    # The same schedule again changes nothing and announces nothing.
    same = await core.control.set_schedule("foo", "0 6 * * 1-5", by="http")
    assert same.version == new.version and len(await events(db)) == 1


async def test_a_deploy_that_changes_the_configured_schedule_takes_over(core: Core, db: asyncpg.Connection,  # noqa: F811
                                                                        webhook: WebhookSink) -> None:
    await core.control.reconcile("foo")
    await core.control.set_schedule("foo", "0 12 * * *", by="http")
    deployed = Control(core.pool, Queries(), core.runner, catalogue("30 7 * * *", tz=TZ), TZ,
                       core.notifier)
    after = await deployed.reconcile("foo")
    assert (after.cron, after.source, after.set_by) == ("30 7 * * *", "config", "deploy")
    assert [e[:2] for e in await events(db)] == [("schedule-set", "http"), ("schedule-deploy", "deploy")]
    await wait_until(lambda: len(webhook.received) >= 2, message="two announcements")
    assert "deploy" in webhook.received[1]["text"] and "0 12 * * *" in webhook.received[1]["text"]
    # Replicas of that deploy starting after it change nothing more.
    assert (await deployed.reconcile("foo")).version == after.version
    assert len(await events(db)) == 2


async def test_bad_schedules_are_refused_naming_the_problem_and_change_nothing(core: Core,  # noqa: F811
                                                                              db: asyncpg.Connection) -> None:
    await core.control.reconcile("foo")
    before = dict(await state_row(db))
    for cron, zone, words in (("61 * * * *", None, "minute: 61 is outside 0-59"),
                              ("0 0 30 2 *", None, "never occurs"),
                              ("0 0 * *", None, "expected 5 fields"),
                              ("", None, "an expression is needed"),
                              ("0 6 * * *", "Mars/Olympus", "timezone: unknown IANA time zone")):
        with pytest.raises(BadInput, match=words):
            await core.control.set_schedule("foo", cron, zone, by="http")
    assert dict(await state_row(db)) == before and await events(db) == []


async def test_a_fire_of_the_old_schedule_is_refused_and_the_new_one_runs(core: Core,  # noqa: F811
                                                                          db: asyncpg.Connection) -> None:
    old = await core.control.reconcile("foo")
    new = await core.control.set_schedule("foo", "0 * * * * *", by="http")  # every minute at :00
    at_new = new.fires(1)[0]
    at_old_only = at_new + timedelta(seconds=3)  # a */3 instant that is not a minute
    # A fire armed under the old version (waiting for a run in progress while the change came).
    assert await core.runner.run("foo", trigger="schedule", scheduled_for=at_old_only,
                                 schedule_version=old.version) is None
    # An instant both schedules have still runs, whatever version it was armed with.
    run = await core.runner.run("foo", trigger="schedule", scheduled_for=at_new, schedule_version=old.version)
    assert run is not None and run.status == "succeeded"
    assert await db.fetchval("SELECT count(*) FROM foojob_runs") == 1


async def test_skip_skips_only_the_next_fire(core: Core, db: asyncpg.Connection, webhook: WebhookSink) -> None:  # noqa: F811
    schedule = await core.control.reconcile("foo")
    before = datetime.now(UTC)
    skipped = await core.control.skip("foo", by="U0ALICE")
    assert skipped == schedule.expression.next_after(before, TZ) or skipped > before
    assert await core.control.skip("foo", by="U0BOB") == skipped  # a no-op, the same instant
    status = await core.control.status("foo")
    assert status.skip_next == skipped and status.next_run_at == schedule.expression.next_after(skipped, TZ)
    assert [e[:2] for e in await events(db)] == [("skip", "U0ALICE")]

    assert await core.runner.run("foo", trigger="schedule", scheduled_for=skipped,
                                 schedule_version=schedule.version) is None
    following = schedule.expression.next_after(skipped, TZ)
    run = await core.runner.run("foo", trigger="schedule", scheduled_for=following, schedule_version=schedule.version)
    assert run is not None and run.status == "succeeded"

    assert await core.control.unskip("foo", by="U0ALICE") == skipped
    assert await core.control.unskip("foo", by="U0ALICE") is None  # nothing left to clear
    assert (await core.control.status("foo")).skip_next is None
    await wait_until(lambda: len(webhook.received) >= 3, message="skip, run and unskip messages")
    assert "will be skipped" in webhook.received[0]["text"] and "<@U0ALICE>" in webhook.received[0]["text"]

    await core.control.pause("foo", by="http")
    with pytest.raises(Conflict, match="paused"):
        await core.control.skip("foo", by="http")


async def test_skip_never_races_a_fire_under_way(core: Core, db_url: str) -> None:  # noqa: F811
    schedule = await core.control.reconcile("foo")
    under_way = schedule.fires(1)[0]
    # Another replica's fire of that instant holds its lock (it has read the row, not committed).
    other = await asyncpg.connect(db_url)
    try:
        async with other.transaction():
            await other.fetchval(Queries()["try_lock_fire"], "foo", under_way)
            skipped = await core.control.skip("foo", by="http")
    finally:
        await other.close()
    assert skipped == schedule.expression.next_after(under_way, TZ)


async def test_catch_up_uses_the_schedule_in_force_at_the_missed_instant(core: Core) -> None:  # noqa: F811
    await core.control.reconcile("foo")  # every 3 seconds
    changed_at = datetime.now(UTC)
    await core.control.set_schedule("foo", NEVER_SOON, by="http")
    # Since the change nothing fired; before it, the */3 schedule did.
    # What catch-up counts (missed_between) is built on fires_between, schedule by schedule.
    fires = await core.control.fires_between("foo", changed_at - timedelta(minutes=5), datetime.now(UTC), 1000)
    latest = fires[-1] if fires else None
    assert latest is not None and latest <= changed_at and latest.second % 3 == 0
    assert changed_at - latest < timedelta(seconds=3)


# -- HTTP ---------------------------------------------------------------------------------------

async def test_schedule_over_http(spawn: Spawner, db_url: str, db: asyncpg.Connection, http: aiohttp.ClientSession,
                                  webhook: WebhookSink) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_TIMEZONE="Asia/Tokyo",
                               SLACK_WEBHOOK_URL=webhook.url).started()
    status, body = await get_json(http, "GET", f"{svc.url}/schedule?next=3")
    assert status == 200 and set(body) == {"job", "cron", "timezone", "description", "source", "setBy", "setAt", "next"}
    assert (body["cron"], body["timezone"], body["source"], body["setBy"]) == (NEVER_SOON, "Asia/Tokyo", "config", None)
    assert [n[4:] for n in body["next"]] == ["-01-01T00:00:00+09:00"] * 3
    for bad in ("0", "51", "x", "-1"):
        assert (await get_json(http, "GET", f"{svc.url}/schedule?next={bad}"))[0] == 400

    for bad_body, words in (({"cron": "*/10 99 * * *"}, "hour: 99"), ({"cron": "0 6 * * *", "timezone": "Nowhere"},
                                                                      "timezone"),
                            ({}, "'cron' is required"), ({"cron": "0 6 * * *", "when": 1}, "unknown field")):
        status, err = await get_json(http, "PUT", f"{svc.url}/schedule", json=bad_body)
        assert status == 400 and words in err["error"], (bad_body, err)
    assert (await get_json(http, "GET", f"{svc.url}/schedule"))[1]["source"] == "config"

    status, body = await get_json(http, "PUT", f"{svc.url}/schedule", json={"cron": "*/2 * * * * *"})
    assert status == 200 and (body["source"], body["setBy"], body["timezone"]) == ("runtime", "http", "Asia/Tokyo")
    assert body["description"] == "every 2 seconds" and len(body["next"]) == 5
    # The pace of the runs changes within a second or two.
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE trigger = 'schedule'"),
                     timeout=4, message="a run of the new schedule")
    status, st = await get_json(http, "GET", f"{svc.url}/status")
    assert st["scheduleSource"] == "runtime" and st["schedule"] == "*/2 * * * * *" and st["skipNext"] is None

    status, skip = await get_json(http, "POST", f"{svc.url}/skip")
    assert status == 200 and datetime.fromisoformat(skip["skipped"]).second % 2 == 0
    assert await get_json(http, "POST", f"{svc.url}/skip") == (200, skip)  # the same instant
    st = (await get_json(http, "GET", f"{svc.url}/status"))[1]
    assert st["skipNext"] == skip["skipped"]
    assert datetime.fromisoformat(st["nextRunAt"]) == datetime.fromisoformat(skip["skipped"]) + timedelta(seconds=2)
    skipped_at = datetime.fromisoformat(skip["skipped"])
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for > $1", skipped_at),
                     timeout=5, message="the fire after the skipped one")
    assert await db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for = $1", skipped_at) == 0
    # The skipped fire has passed: nothing is left to un-skip (and nothing is recorded).
    assert await get_json(http, "DELETE", f"{svc.url}/skip") == (200, {"skipped": None})

    assert (await get_json(http, "POST", f"{svc.url}/pause"))[0] == 200
    status, err = await get_json(http, "POST", f"{svc.url}/skip")
    assert status == 409 and "paused" in err["error"]
    assert (await get_json(http, "POST", f"{svc.url}/resume"))[0] == 200

    status, body = await get_json(http, "DELETE", f"{svc.url}/schedule")
    assert status == 200 and (body["cron"], body["source"], body["setBy"]) == (NEVER_SOON, "config", "http")
    answered = datetime.now(UTC)
    await asyncio.sleep(2.5)  # two fires of the old pace would have come by now
    late = await db.fetchval("SELECT count(*) FROM foojob_runs WHERE started_at > $1", answered + timedelta(seconds=1))
    assert late == 0
    actions = [e[0] for e in await events(db)]
    assert actions == ["schedule-set", "skip", "pause", "resume", "schedule-reset"]
    await wait_until(lambda: any("reset to the configured schedule" in t for t in webhook.texts()),
                     message="the reset announced")
    assert await svc.stop() == 0


async def test_schedule_endpoints_need_the_token_like_the_posts(spawn: Spawner, db_url: str,
                                                               http: aiohttp.ClientSession) -> None:
    token = "s3cret-token-0123456789"
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, CONTROL_API_TOKEN=token).started()
    for method, path, body in (("PUT", "/schedule", {"cron": "* * * * *"}), ("DELETE", "/schedule", None),
                               ("POST", "/skip", None), ("DELETE", "/skip", None)):
        assert (await get_json(http, method, f"{svc.url}{path}", json=body))[0] == 401
        status, _ = await get_json(http, method, f"{svc.url}{path}", json=body,
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 200, (method, path)
    assert (await get_json(http, "GET", f"{svc.url}/schedule"))[0] == 200  # reading is open


# -- replicas and restarts ----------------------------------------------------------------------

async def test_a_change_reaches_every_replica_within_a_second(spawn: Spawner, db_url: str, db: asyncpg.Connection,
                                                              http: aiohttp.ClientSession) -> None:
    services = [spawn(DATABASE_URL=db_url, FOOJOB_CRON=EVERY_SECOND) for _ in range(3)]
    a, b, c = [await s.started() for s in services]
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs"), message="runs")
    status, _ = await get_json(http, "PUT", f"{a.url}/schedule", json={"cron": "*/3 * * * * *"})
    answered = datetime.now(UTC)
    assert status == 200
    await asyncio.gather(*(s.wait_log(r"foo now follows \*/3", timeout=1.0) for s in (b, c)))
    end = answered + timedelta(seconds=7)
    await wait_until(lambda: db.fetchval("SELECT count(*) FROM foojob_runs WHERE scheduled_for >= $1", end),
                     timeout=12, message="fires of the new schedule")
    rows = await db.fetch("SELECT scheduled_for, started_at FROM foojob_runs WHERE trigger = 'schedule' "
                          "AND started_at > $1 ORDER BY 1", answered + timedelta(seconds=1))
    instants = [r["scheduled_for"] for r in rows]
    print(f"\nafter the change: {len(instants)} runs, at seconds {[t.second for t in instants]}")
    assert instants and all(t.second % 3 == 0 for t in instants), "a fire of the old schedule ran"
    assert len(instants) == len(set(instants))
    first_new = (answered + timedelta(seconds=1)).replace(microsecond=0)
    expected = [t for t in (first_new + timedelta(seconds=i) for i in range(1, 8)) if t.second % 3 == 0 and t <= end]
    assert set(expected) <= set(instants), f"missed new fires: {sorted(set(expected) - set(instants))}"
    for svc in (a, b, c):
        assert await svc.stop() == 0


async def test_a_runtime_schedule_survives_a_restart_and_a_deploy_takes_over(
        spawn: Spawner, db_url: str, db: asyncpg.Connection, http: aiohttp.ClientSession,
        webhook: WebhookSink) -> None:
    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    assert (await get_json(http, "PUT", f"{svc.url}/schedule", json={"cron": "0 6 * * *",
                                                                     "timezone": "Europe/London"}))[0] == 200
    assert await svc.stop() == 0

    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, SLACK_WEBHOOK_URL=webhook.url).started()
    assert "scheduled foo: 0 6 * * *" in svc.stderr() and "runtime schedule set by http" in svc.stderr()
    body = (await get_json(http, "GET", f"{svc.url}/schedule"))[1]
    assert (body["cron"], body["timezone"], body["source"]) == ("0 6 * * *", "Europe/London", "runtime")
    assert await svc.stop() == 0

    svc = await spawn(DATABASE_URL=db_url, FOOJOB_CRON="15 4 * * *", SLACK_WEBHOOK_URL=webhook.url).started()
    body = (await get_json(http, "GET", f"{svc.url}/schedule"))[1]
    assert (body["cron"], body["timezone"], body["source"], body["setBy"]) == ("15 4 * * *", "UTC", "config",
                                                                              "deploy")
    await wait_until(lambda: any("deploy" in t for t in webhook.texts()), message="the deploy announced")
    [deploy] = [t for t in webhook.texts() if "deploy" in t]
    assert "0 6 * * *" in deploy and "15 4 * * *" in deploy
    assert [e[:2] for e in await events(db)] == [("schedule-set", "http"), ("schedule-deploy", "deploy")]
    assert await svc.stop() == 0


# -- CLI ----------------------------------------------------------------------------------------

async def test_schedule_from_the_cli(db_url: str, db: asyncpg.Connection) -> None:
    env = {"DATABASE_URL": db_url, "FOOJOB_CRON": NEVER_SOON}
    shown = run_cli("schedule", "--json", "--next", "2", **env)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["cron"] == NEVER_SOON and body["source"] == "config" and len(body["next"]) == 2

    set_ = run_cli("schedule", "set", "30", "6", "*", "*", "1-5", "--timezone", "Asia/Tokyo", **env)
    assert set_.returncode == 0, set_.stderr
    assert "30 6 * * 1-5" in set_.stdout and "Monday through Friday" in set_.stdout and "by cli" in set_.stdout
    row = await state_row(db)
    assert (row["cron"], row["timezone"], row["schedule_source"]) == ("30 6 * * 1-5", "Asia/Tokyo", "runtime")

    bad = run_cli("schedule", "set", "30 6 * * 8", **env)
    assert bad.returncode == 2 and "day-of-week: 8 is outside 0-7" in bad.stderr and "Traceback" not in bad.stderr

    nxt = run_cli("next", "3", **env)
    assert nxt.returncode == 0 and len(nxt.stdout.splitlines()) == 3 and "06:30:00 JST" in nxt.stdout

    skip = run_cli("skip", "--json", **env)
    assert skip.returncode == 0 and json.loads(skip.stdout)["skipped"] is not None
    status = run_cli("status", **env)
    assert "skipped:" in status.stdout and "set at runtime" in status.stdout
    assert run_cli("unskip", **env).returncode == 0
    assert (await state_row(db))["skip_next"] is None

    reset = run_cli("schedule", "reset", **env)
    assert reset.returncode == 0 and NEVER_SOON in reset.stdout
    assert [e[:2] for e in await events(db)] == [("schedule-set", "cli"), ("skip", "cli"), ("unskip", "cli"),
                                                  ("schedule-reset", "cli")]


# -- Slack --------------------------------------------------------------------------------------

def section_text(message: dict[str, object]) -> str:
    return " ".join(b["text"]["text"] for b in message.get("blocks", []) if b["type"] == "section")  # type: ignore[index, union-attr, attr-defined]


async def test_schedule_from_slack_preview_then_apply(spawn: Spawner, slack: SlackSimulator, db_url: str,
                                                      db: asyncpg.Connection) -> None:
    await start(spawn, slack, db_url, SLACK_ALLOWED_USERS="U0ALICE")
    env = await slack.command("schedule")
    assert await acked(slack, env) == {}
    [shown] = await replies(slack, env)
    assert "at 00:00 on day 1 of the month in January" in section_text(shown) and "configured" in section_text(shown)

    # A bad field: an ephemeral error naming it, and nothing changed.
    ack = await acked(slack, await slack.command("schedule set 0 25 * * *"))
    assert ack["response_type"] == "ephemeral" and "hour: 25 is outside 0-23" in ack["text"]

    env = await slack.command("schedule set 0 6 * * 1-5 Europe/London")
    await acked(slack, env)
    [preview] = await replies(slack, env)
    assert preview["response_type"] == "ephemeral"
    assert button_ids(preview) == ["foojob_schedule_apply", "foojob_schedule_cancel"]
    text = section_text(preview)
    assert "Monday through Friday" in text and "Europe/London" in text and text.count("06:00:00 GMT") + text.count(
        "06:00:00 BST") == 5
    assert (await state_row(db))["cron"] == NEVER_SOON  # a preview changes nothing
    apply_value = next(e["value"] for b in preview["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == "foojob_schedule_apply")

    # Someone not allowed can neither preview nor apply.
    ack = await acked(slack, await slack.command("schedule set 0 7 * * *", user="U0MALLORY"))
    assert "only *schedulers*" in ack["text"]
    env = await slack.click("foojob_schedule_apply", apply_value, user="U0MALLORY", ephemeral=True)
    [refused] = await replies(slack, env)
    assert "only *schedulers*" in refused["text"] and (await state_row(db))["cron"] == NEVER_SOON

    env = await slack.click("foojob_schedule_cancel", "foo", ephemeral=True, message_ts="1700000000.000200")
    [cancelled] = await replies(slack, env)
    assert cancelled["replace_original"] is True and "not changed" in cancelled["text"]

    env = await slack.click("foojob_schedule_apply", apply_value, ephemeral=True, message_ts="1700000000.000300")
    [applied] = await replies(slack, env)
    assert "Applied" in applied["text"] and applied["replace_original"] is True
    row = await state_row(db)
    assert (row["cron"], row["timezone"], row["schedule_set_by"]) == ("0 6 * * 1-5", "Europe/London", "U0ALICE")
    await wait_until(lambda: any("schedule was changed by <@U0ALICE>" in m["text"] for m in slack.webhook),
                     message="the change announced in the channel")

    env = await slack.command("next 7")
    await acked(slack, env)
    [nxt] = await replies(slack, env)
    assert nxt["text"].count("• ") == 7

    env = await slack.command("skip")
    await acked(slack, env)
    [skipped] = await replies(slack, env)
    assert "will be skipped" in skipped["text"] and (await state_row(db))["skip_next"] is not None
    env = await slack.command("status")
    await acked(slack, env)
    [status] = await replies(slack, env)
    assert "set at runtime" in section_text(status) and "Skipped:" in section_text(status)
    env = await slack.command("unskip")
    await acked(slack, env)
    await replies(slack, env)
    assert (await state_row(db))["skip_next"] is None

    env = await slack.command("schedule reset")
    await acked(slack, env)
    [preview] = await replies(slack, env)
    assert "Back to the configured schedule" in section_text(preview)
    reset_value = next(e["value"] for b in preview["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == "foojob_schedule_apply")
    env = await slack.click("foojob_schedule_apply", reset_value, ephemeral=True, message_ts="1700000000.000400")
    await replies(slack, env)
    assert (await state_row(db))["schedule_source"] == "config"
    assert [e[0] for e in await events(db)] == ["schedule-set", "skip", "unskip", "schedule-reset"]


async def test_reset_goes_back_to_the_configured_schedule_the_database_recorded(db_url: str,
                                                                                db: asyncpg.Connection) -> None:
    service = {"DATABASE_URL": db_url, "FOOJOB_CRON": "*/3 * * * * *"}
    # Before any service started, a schedule set from the CLI: the first start keeps it (it is no deploy).
    assert run_cli("schedule", "set", "0 5 * * *", **service).returncode == 0
    control = _core_control(db_url, "*/3 * * * * *")
    async with control as ctl:
        kept = await ctl.reconcile("foo")
        assert (kept.cron, kept.source) == ("0 5 * * *", "runtime")
    # A CLI with other variables (none: the default nightly) resets to what the services run with.
    reset = run_cli("schedule", "reset", "--json", DATABASE_URL=db_url)
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["cron"] == "*/3 * * * * *"
    # Skip while paused, from the CLI: one line, exit 3 (not the job's state to do it in).
    assert run_cli("pause", DATABASE_URL=db_url).returncode == 0
    skip = run_cli("skip", DATABASE_URL=db_url)
    assert skip.returncode == 3 and skip.stderr.strip().splitlines() == [
        "foojob: foo is paused: no fire is coming to skip (resume it first)"]


class _core_control:
    """A Control of a service started with ``cron`` as its FOOJOB_CRON, on its own pool."""

    def __init__(self, db_url: str, cron: str) -> None:
        self._db_url, self._cron = db_url, cron

    async def __aenter__(self) -> Control:
        from bot.db import create_pool
        from bot.notify import SilentNotifier
        from bot.runner import Runner

        self._pool = await create_pool(self._db_url)
        notifier = SilentNotifier()
        runner = Runner(self._pool, Queries(), catalogue(tz=TZ), notifier, TZ)
        return Control(self._pool, Queries(), runner, catalogue(self._cron, tz=TZ), TZ, notifier)

    async def __aexit__(self, *exc: object) -> None:
        await self._pool.close()
