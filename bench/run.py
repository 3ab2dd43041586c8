"""``make bench``: foojob's overhead, measured beside its physical floor in the same run.

Prints one table (figure, value, floor, ratio, target) and writes the raw results to
``bench/results/<UTC time>.json`` and ``bench/results/latest.json``. Real parts only: the real
PostgreSQL (``BENCH_DATABASE_URL``, else ``TEST_DATABASE_URL``, else 127.0.0.1:5432 if it answers,
else an embedded one), real service processes, the Slack simulator of the tests.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import embedded_postgres  # noqa: E402
from tests.slack_sim import APP_TOKEN, BOT_TOKEN, SlackSimulator  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SERVICE_VARS = ("DATABASE_URL", "FOOJOB_DATA_DIR", "FOOJOB_CRON", "FOOJOB_TIMEZONE", "SLACK_BOT_TOKEN",
                "SLACK_APP_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_API_URL", "SLACK_ALLOWED_USERS", "HOST",
                "PORT", "CONTROL_API_TOKEN", "LOG_LEVEL", "LOG_FORMAT", "FOOJOB_MISFIRE_GRACE")
NEVER = "0 0 1 1 *"
N_FLOOR, N_RUN_NOW, FIRE_SECONDS, ACK_IN_FLIGHT, ACK_ROUNDS = 1000, 500, 30, 50, 4


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- the database -------------------------------------------------------------------------------

@asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not url:
        probe = "postgresql://postgres@127.0.0.1:5432/postgres"
        try:
            await (await asyncpg.connect(probe, timeout=2)).close()
            url = probe
        except (OSError, asyncpg.PostgresError, TimeoutError):
            url = None
    if url:
        yield url
        return
    with embedded_postgres("foojob-bench-pg-") as uri:
        yield uri


def with_db(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@asynccontextmanager
async def scratch_db(server: str) -> AsyncIterator[str]:
    name = f"foojob_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_db(server, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# -- a loopback sink (the webhook, and the floor of an HTTP POST) -------------------------------

@asynccontextmanager
async def sink() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


# -- service processes --------------------------------------------------------------------------

class Service:
    def __init__(self, **env: str) -> None:
        full = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
        full.update({"HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "INFO", **env})
        self.log = tempfile.NamedTemporaryFile(prefix="foojob-bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=full, stdout=subprocess.DEVNULL,
                                     stderr=self.log, stdin=subprocess.DEVNULL)
        self.url = ""

    async def healthy(self, http: aiohttp.ClientSession, timeout: float = 60) -> float:
        """Seconds from the start of the process to its first 200 on /healthz."""
        import re

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {Path(self.log.name).read_text()[-2000:]}")
            if not self.url:
                found = re.search(r"listening on http://[^:]+:(\d+)", Path(self.log.name).read_text())
                if found:
                    self.url = f"http://127.0.0.1:{found.group(1)}"
            if self.url:
                try:
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return time.monotonic() - self.started_at
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.005)
        raise RuntimeError("service did not become healthy")

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        os.unlink(self.log.name)


@asynccontextmanager
async def services(n: int, http: aiohttp.ClientSession, **env: str) -> AsyncIterator[list[Service]]:
    started = [Service(**env) for _ in range(n)]
    try:
        for svc in started:
            await svc.healthy(http)
        yield started
    finally:
        for svc in started:
            svc.stop()


# -- measurements -------------------------------------------------------------------------------

async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(max(20, n // 20)):  # warm up
        await call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


async def floor_txn(db: str) -> list[float]:
    conn = await asyncpg.connect(db)
    await conn.execute("CREATE TABLE IF NOT EXISTS foo (id INTEGER PRIMARY KEY, col_timestamp TIMESTAMPTZ NOT NULL)")
    sql = ("INSERT INTO foo (id, col_timestamp) VALUES (1, now()) ON CONFLICT (id) DO UPDATE "
           "SET col_timestamp = EXCLUDED.col_timestamp RETURNING id, col_timestamp")

    async def txn() -> None:
        async with conn.transaction():
            await conn.fetchrow(sql)

    try:
        return await timed(N_FLOOR, txn)
    finally:
        await conn.close()


async def floor_post(http: aiohttp.ClientSession, url: str) -> list[float]:
    async def post() -> None:
        async with http.post(url, json={"text": "floor"}) as resp:
            await resp.read()

    return await timed(N_FLOOR, post)


async def fire_lags(db: str) -> list[float]:
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT extract(epoch FROM started_at - scheduled_for) AS lag FROM foojob_runs "
                                "WHERE trigger = 'schedule' ORDER BY scheduled_for")
    finally:
        await conn.close()
    return [float(r["lag"]) for r in rows][1:]  # the first fire can race the start-up


async def bare_apscheduler(seconds: int) -> list[float]:
    """The same 1-second cron in a bare AsyncIOScheduler: the floor of a scheduled fire's lag."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    lags: list[float] = []

    async def job() -> None:
        now = datetime.now(UTC)
        lags.append(now.timestamp() - int(now.timestamp()))

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(job, CronTrigger(second="*", timezone=UTC), misfire_grace_time=None)
    scheduler.start()
    await asyncio.sleep(seconds)
    scheduler.shutdown(wait=False)
    return lags[1:]


async def ack_latencies(server: str, http: aiohttp.ClientSession) -> list[float]:
    sim = await SlackSimulator().start()
    try:
        async with scratch_db(server) as db, services(1, http, DATABASE_URL=db, FOOJOB_CRON=NEVER,
                                                       SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN,
                                                       SLACK_API_URL=sim.api_url, SLACK_WEBHOOK_URL=sim.webhook_url):
            while not sim.connected():
                await asyncio.sleep(0.01)
            await sim.command("status")  # the first request also makes Bolt call auth.test
            await asyncio.sleep(1)
            out: list[float] = []
            for _ in range(ACK_ROUNDS):
                envelopes = await asyncio.gather(*(sim.command("status") for _ in range(ACK_IN_FLIGHT)))
                deadline = time.monotonic() + 10
                while any(sim.ack_for(e) is None for e in envelopes) and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                out += [sim.acks[e.envelope_id].at - e.sent_at for e in envelopes if sim.ack_for(e)]
                await asyncio.sleep(0.5)
            return out
    finally:
        await sim.stop()


async def main() -> int:
    figures: dict[str, float] = {}
    extra: dict[str, Any] = {}
    async with postgres() as server, aiohttp.ClientSession() as http, sink() as hook:
        admin = await asyncpg.connect(server)
        version = await admin.fetchval("SHOW server_version")
        await admin.close()
        print(f"PostgreSQL {version}; measuring (about two minutes and a half)…", flush=True)

        async with scratch_db(server) as db:
            txn = await floor_txn(db)
        post = await floor_post(http, hook)
        figures |= {"floor_txn_p50": ms(pct(txn, 50)), "floor_txn_p99": ms(pct(txn, 99)),
                    "floor_post_p50": ms(pct(post, 50)), "floor_post_p99": ms(pct(post, 99))}

        async with scratch_db(server) as db:
            svc = Service(DATABASE_URL=db, FOOJOB_CRON=NEVER, SLACK_WEBHOOK_URL=hook)
            try:
                await svc.healthy(http)

                async def run_now() -> None:
                    async with http.post(f"{svc.url}/runNow") as resp:
                        assert resp.status == 200, await resp.text()

                runs = await timed(N_RUN_NOW, run_now)
            finally:
                svc.stop()
        figures |= {"run_now_p50": ms(pct(runs, 50)), "run_now_p99": ms(pct(runs, 99))}

        # (After run-now: this bench process's own Slack simulator, once it has served, slowed its
        # HTTP client — measured: 1.8 → 2.5 ms — and so the run-now figure, which is not foojob's.)
        # Start-up and memory with everything on: Slack (through the simulator) and the webhook.
        sim = await SlackSimulator().start()
        try:
            async with scratch_db(server) as db:
                svc = Service(DATABASE_URL=db, FOOJOB_CRON=NEVER, SLACK_WEBHOOK_URL=sim.webhook_url,
                              SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=sim.api_url)
                try:
                    figures["startup_s_external"] = round(await svc.healthy(http), 3)
                    await asyncio.sleep(2)
                    figures["idle_rss_mb"] = round(svc.rss_mb(), 1)
                finally:
                    svc.stop()
        finally:
            await sim.stop()

        bare = await bare_apscheduler(FIRE_SECONDS)  # alone: the floor, not sharing the cores
        extra["bare_fires"] = len(bare)
        for replicas in (1, 3):
            async with scratch_db(server) as db:
                async with services(replicas, http, DATABASE_URL=db, FOOJOB_CRON="* * * * * *"):
                    await asyncio.sleep(FIRE_SECONDS)
                lags = await fire_lags(db)
            figures |= {f"fire_lag_p50_{replicas}": ms(pct(lags, 50)), f"fire_lag_p99_{replicas}": ms(pct(lags, 99)),
                        f"fire_lag_max_{replicas}": ms(max(lags))}
            extra[f"fires_{replicas}"] = len(lags)
        figures |= {"bare_aps_fire_lag_p50": ms(pct(bare, 50)), "bare_aps_fire_lag_p99": ms(pct(bare, 99))}

        acks = await ack_latencies(server, http)
        figures |= {"ack_p50": ms(pct(acks, 50)), "ack_p99": ms(pct(acks, 99))}
        extra["acks"] = len(acks)

        home = Path(tempfile.mkdtemp(prefix="foojob-bench-data-"))
        try:
            # The first start (initdb) is what `make run` does on a fresh clone; then a warm one.
            for label in ("startup_s_embedded", "startup_s_embedded_warm"):
                svc = Service(FOOJOB_DATA_DIR=str(home / "data"), FOOJOB_CRON=NEVER)
                try:
                    figures[label] = round(await svc.healthy(http), 3)
                finally:
                    svc.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)

    report(figures, extra, version)
    return 0


def report(f: dict[str, float], extra: dict[str, Any], version: str) -> None:
    floor_run = f["floor_txn_p50"] + f["floor_post_p50"]
    rows = [
        ("raw asyncpg txn p50 / p99 (ms)", f"{f['floor_txn_p50']} / {f['floor_txn_p99']}", "", "", "floor"),
        ("raw aiohttp POST p50 / p99 (ms)", f"{f['floor_post_p50']} / {f['floor_post_p99']}", "", "", "floor"),
        ("POST /runNow p50 (ms)", f["run_now_p50"], round(floor_run, 3), f["run_now_p50"] / floor_run,
         "≤ 3 × floor", f["run_now_p50"] <= 3 * floor_run),
        ("POST /runNow p99 (ms)", f["run_now_p99"], "", "", ""),
        ("fire lag p50 / p99 / max, 1 replica (ms)",
         f"{f['fire_lag_p50_1']} / {f['fire_lag_p99_1']} / {f['fire_lag_max_1']}", f["bare_aps_fire_lag_p99"],
         f["fire_lag_p99_1"] / max(f["bare_aps_fire_lag_p99"], 0.001), "p99 ≤ 10", f["fire_lag_p99_1"] <= 10),
        ("fire lag p50 / p99 / max, 3 replicas (ms)",
         f"{f['fire_lag_p50_3']} / {f['fire_lag_p99_3']} / {f['fire_lag_max_3']}", f["bare_aps_fire_lag_p99"],
         f["fire_lag_p99_3"] / max(f["bare_aps_fire_lag_p99"], 0.001), "p99 ≤ 10", f["fire_lag_p99_3"] <= 10),
        ("bare APScheduler fire lag p50 / p99 (ms)", f"{f['bare_aps_fire_lag_p50']} / {f['bare_aps_fire_lag_p99']}",
         "", "", "floor"),
        ("slash-command ack p50 / p99, 50 in flight (ms)", f"{f['ack_p50']} / {f['ack_p99']}", "", "",
         "p99 ≤ 25", f["ack_p99"] <= 25),
        ("idle RSS after start-up (MB)", f["idle_rss_mb"], "", "", "≤ 70", f["idle_rss_mb"] <= 70),
        ("start-up to healthy, external DB (s)", f["startup_s_external"], "", "", "≤ 1.5",
         f["startup_s_external"] <= 1.5),
        ("start-up to healthy, embedded DB (s)", f"{f['startup_s_embedded']} (warm: {f['startup_s_embedded_warm']})",
         "", "", ""),
    ]
    # A figure from fewer samples than asked for would hide what was lost (an unacked command, a
    # fire that did not run): say so.
    expected = {"acks": ACK_IN_FLIGHT * ACK_ROUNDS, "fires_1": FIRE_SECONDS - 2, "fires_3": FIRE_SECONDS - 2,
                "bare_fires": FIRE_SECONDS - 2}
    short = {k: (extra.get(k), v) for k, v in expected.items() if (extra.get(k) or 0) < v}
    print()
    print(f"{'figure':<48} {'value':>26} {'floor':>8} {'ratio':>7}  target")
    for row in rows:
        name, value, floor, ratio, target, *met = row
        ratio_text = f"{ratio:.2f}" if isinstance(ratio, float) else ""
        verdict = (" ✓" if met[0] else " ✗ MISSED") if met else ""
        print(f"{name:<48} {value!s:>26} {floor!s:>8} {ratio_text:>7}  {target}{verdict}")
    memory = psutil.virtual_memory().total / 2**30
    machine = {"cores": os.cpu_count(), "memory_gb": round(memory, 1), "postgresql": version,
               "python": platform.python_version(), "platform": platform.platform()}
    print(f"\nmachine: {machine['cores']} cores, {machine['memory_gb']} GiB, PostgreSQL {version}, "
          f"Python {machine['python']}; samples {extra}")
    if short:
        print(f"MISSING SAMPLES (got, expected at least): {short}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"when": datetime.now(UTC).isoformat(), "machine": machine, "figures": f, "samples": extra}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"raw results: {RESULTS / (stamp + '.json')} and latest.json")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
