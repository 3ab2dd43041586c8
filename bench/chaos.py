"""`make chaos`: foojob's strongest promise, measured — replicas of the real service on a one-second
schedule, against one PostgreSQL behind a proxy this harness controls and a local webhook sink,
while it kills, freezes and restarts replicas, cuts the database off, changes the schedule, pauses,
resumes and skips. Then, from the database and the sink, it counts:

* fires run twice (0) — by the runs, and by the side effects an SQL job writes in its transaction;
* fires unaccounted (0): due while the window was open, not run, not paused, not skipped, not
  reported missed (``foojob_missed``: a fire given up, a gap with no replica up, an outage);
* messages lost (0): an outbox message (or the folded line that carries it) the sink never got;
* messages undelivered after recovery (0);
* messages delivered twice: counted, at most one per fault that can catch a delivery in flight
  (a database cut, a SIGKILL: Slack's webhook has no idempotency key);
* tracebacks in the replicas' logs (0).

Exit 1 on any violation, printing the seed (``CHAOS_SEED`` replays the same faults) and the
timeline of faults. Settings: ``CHAOS_S`` (default 300), ``CHAOS_REPLICAS`` (3), ``CHAOS_SEED``,
``CHAOS_DATABASE_URL`` (else ``TEST_DATABASE_URL``, else the local server at 127.0.0.1:5432, else
an embedded one). Jobs: foo (Python, every second, every result posted; its schedule is the one
changed), ``effects`` (SQL, every second, writes a row per run), ``flaky`` (SQL, every 2 s, fails
one time in four, 2 retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.cron import CronSchedule  # noqa: E402

EVERY_S = "* * * * * *"
EVERY_2S = "*/2 * * * * *"
JOBS = {
    "effects": f"-- cron: {EVERY_S}\n-- notify: failures\nINSERT INTO chaos_effects (job) VALUES ('effects');\n",
    "flaky": (f"-- cron: {EVERY_2S}\n-- notify: failures\n-- retries: 2\n-- retry-delay: 1s\n"
              "SELECT 1 / floor(random() * 4)::int AS ok;\n"),
}
# Instants this close to a schedule change or a pause boundary may go either way: not counted as
# unaccounted (a run there is still checked for being run twice).
AMBIGUOUS_S = 2.0
SERVICE_VARS = ("DATABASE_URL", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_CHANNEL",
                "FOOJOB_CRON", "FOOJOB_JOBS_DIR", "PORT", "HOST", "FOOJOB_HTTP_TOKEN", "FOOJOB_HEARTBEAT_URL")


def now() -> float:
    return time.time()


# -- the database, behind a proxy the harness can cut ----------------------------------------------

async def server_url() -> tuple[str, contextlib.AbstractContextManager[Any] | None]:
    url = os.environ.get("CHAOS_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if url:
        return url, None
    probe = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        await (await asyncpg.connect(probe, timeout=2)).close()
        return probe, None
    except (OSError, asyncpg.PostgresError, TimeoutError):
        from tests.pg import embedded_postgres

        manager = embedded_postgres("foojob-chaos-pg-")
        return manager.__enter__(), manager


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


class Proxy:
    """A TCP proxy to PostgreSQL (over TCP or its Unix socket). ``cut(s)``: every connection
    through it is closed, and new ones refused, for ``s`` seconds."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        host = (query.get("host") or [parts.hostname or "127.0.0.1"])[0]
        port = parts.port or int((query.get("port") or ["5432"])[0])
        self.unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self.host, self.port = host, port
        self.cut_until = 0.0
        self._live: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.listen_port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._live):
            writer.close()

    def cut(self, seconds: float) -> None:
        self.cut_until = now() + seconds
        for writer in list(self._live):
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if now() < self.cut_until:
            writer.transport.abort()
            return
        try:
            if self.unix:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix)
            else:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self._live.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._live.discard(writer)
        self._live.discard(up_writer)


# -- the webhook sink -----------------------------------------------------------------------------

@dataclass
class Sink:
    texts: Counter[str] = field(default_factory=Counter)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            self.texts[str(body.get("text", ""))] += 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- the replicas ---------------------------------------------------------------------------------

class Replica:
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name, self._env, self._logs = name, env, logs
        self.lives = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.url = ""
        self.frozen = False

    def start(self) -> None:
        self.lives += 1
        self.log = self._logs / f"{self.name}.{self.lives}.log"
        self.url = ""
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=self._env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def find_url(self) -> str:
        if not self.url and self.log is not None and self.log.exists():
            found = re.search(r"listening on http://[^:]+:(\d+)", self.log.read_text(errors="replace"))
            if found:
                self.url = f"http://127.0.0.1:{found.group(1)}"
        return self.url

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.alive:
            self.proc.send_signal(sig)


@dataclass
class Chaos:
    seed: int
    seconds: float
    replicas: int
    timeline: list[str] = field(default_factory=list)
    cuts: int = 0
    kills: int = 0
    started_at: float = 0.0

    def note(self, what: str) -> None:
        line = f"{now() - self.started_at:7.1f}s  {what}"
        self.timeline.append(line)
        print(line, flush=True)


async def stopped(replica: Replica, within_s: float) -> int:
    """The exit status of a replica told to stop; killed (-9) past ``within_s``."""
    assert replica.proc is not None
    deadline = now() + within_s
    while replica.proc.poll() is None and now() < deadline:
        await asyncio.sleep(0.1)
    if replica.proc.poll() is None:
        replica.proc.kill()
        replica.proc.wait()
        return -9
    return replica.proc.returncode


async def healthy(http: aiohttp.ClientSession, replica: Replica, within_s: float = 60) -> None:
    deadline = now() + within_s
    while now() < deadline:
        if not replica.alive:
            raise RuntimeError(f"{replica.name} exited at start: {replica.log and replica.log.read_text()[-2000:]}")
        if replica.find_url():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{replica.url}/healthz") as resp:
                    if resp.status == 200:
                        return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{replica.name} did not become healthy")


async def act(http: aiohttp.ClientSession, chaos: Chaos, replicas: list[Replica], method: str, path: str,
              body: dict[str, Any] | None = None) -> None:
    """One control request to a replica that can answer (not frozen); the outcome goes in the
    timeline (a failure during a cut is expected: the audit trail says what happened)."""
    ready = [r for r in replicas if r.alive and not r.frozen and r.find_url()]
    if not ready:
        chaos.note(f"{method} {path}: no replica to ask")
        return
    replica = random.choice(ready)
    try:
        async with http.request(method, f"{replica.url}{path}", json=body,
                                timeout=aiohttp.ClientTimeout(total=5)) as resp:
            answer = (await resp.text())[:120]
            chaos.note(f"{method} {path} {json.dumps(body) if body else ''} on {replica.name}: {resp.status} {answer}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        chaos.note(f"{method} {path} on {replica.name}: {type(exc).__name__}")


async def faults(http: aiohttp.ClientSession, chaos: Chaos, replicas: list[Replica], proxy: Proxy,
                 until: float) -> None:
    rng = random.Random(chaos.seed)
    pending: set[asyncio.Task[None]] = set()

    def later(delay: float, what: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await what()
        task = asyncio.ensure_future(run())
        pending.add(task)
        task.add_done_callback(pending.discard)

    cron = EVERY_S
    while now() < until:
        await asyncio.sleep(rng.uniform(2, 6))
        if now() >= until:
            break
        kind = rng.choices(["kill", "stop", "cut", "schedule", "pause", "skip"], [3, 2, 2, 1, 1, 1])[0]
        up = [r for r in replicas if r.alive and not r.frozen]
        if kind == "kill" and len(up) > 1:
            victim = rng.choice(up)
            victim.signal(signal.SIGKILL)
            chaos.kills += 1
            back = rng.uniform(1, 4)
            chaos.note(f"SIGKILL {victim.name}; restart in {back:.1f} s")

            async def restart(victim: Replica = victim) -> None:
                victim.start()
                chaos.note(f"started {victim.name} again")
            later(back, restart)
        elif kind == "stop" and len(up) > 1:
            victim = rng.choice(up)
            victim.signal(signal.SIGSTOP)
            victim.frozen = True
            thaw = rng.uniform(3, 8)
            chaos.note(f"SIGSTOP {victim.name} for {thaw:.1f} s")

            async def cont(victim: Replica = victim) -> None:
                victim.signal(signal.SIGCONT)
                victim.frozen = False
                chaos.note(f"SIGCONT {victim.name}")
            later(thaw, cont)
        elif kind == "cut" and now() >= proxy.cut_until:
            seconds = rng.uniform(3, 10)
            proxy.cut(seconds)
            chaos.cuts += 1
            chaos.note(f"database cut for {seconds:.1f} s")
        elif kind == "schedule":
            cron = EVERY_2S if cron == EVERY_S else EVERY_S
            await act(http, chaos, replicas, "PUT", "/schedule", {"cron": cron})
        elif kind == "pause":
            if rng.random() < 0.5:
                await act(http, chaos, replicas, "POST", "/pause", {"for": f"{rng.randint(3, 8)}s", "reason": "chaos"})
            else:
                await act(http, chaos, replicas, "POST", "/jobs/effects/pause", {"reason": "chaos"})
                hold = rng.uniform(3, 8)

                async def resume() -> None:
                    await act(http, chaos, replicas, "POST", "/jobs/effects/resume")
                later(hold, resume)
        elif kind == "skip":
            await act(http, chaos, replicas, "POST", rng.choice(["/skip", "/jobs/effects/skip"]))
    for task in list(pending):  # restarts, thaws and resumes still to come: now
        task.cancel()
    for replica in replicas:
        if replica.frozen:
            replica.signal(signal.SIGCONT)
            replica.frozen = False
            chaos.note(f"SIGCONT {replica.name} (end of faults)")
        if not replica.alive:
            replica.start()
            chaos.note(f"started {replica.name} again (end of faults)")
    proxy.cut_until = 0.0


# -- the checks -----------------------------------------------------------------------------------

@dataclass
class Findings:
    twice: int = 0
    unaccounted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    undelivered: int = 0
    delivered_twice: int = 0
    tracebacks: int = 0
    runs: int = 0
    messages: int = 0
    checked_fires: int = 0


def _instants(cron: str, start: datetime, end: datetime) -> list[datetime]:
    expression = CronSchedule.parse(cron)
    out: list[datetime] = []
    at = start
    while True:
        at = expression.next_after(at, UTC)
        if at > end:
            return out
        out.append(at)


async def check(db: asyncpg.Connection, sink: Sink, logs: Path, window: tuple[datetime, datetime],
                cutoff: datetime) -> Findings:
    f = Findings()
    start, end = window
    # Run twice: the claim's key, and the side effects (written in the run's own transaction).
    f.twice = await db.fetchval("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM foojob_runs "
                                "WHERE scheduled_for IS NOT NULL GROUP BY job, scheduled_for, attempt) AS fires")
    effects = await db.fetchval("SELECT count(*) FROM chaos_effects")
    effect_runs = await db.fetchval("SELECT count(*) FROM foojob_runs WHERE job = 'effects' AND status = 'succeeded'")
    f.twice += max(0, effects - effect_runs)
    f.runs = await db.fetchval("SELECT count(*) FROM foojob_runs")

    events = await db.fetch("SELECT job, action, at, resume_at, detail FROM foojob_control_events ORDER BY id")
    missed = await db.fetch("SELECT job, scheduled_for, reason, reported_at FROM foojob_missed")
    ran = {(r["job"], r["scheduled_for"]) for r in await db.fetch(
        "SELECT DISTINCT job, scheduled_for FROM foojob_runs WHERE scheduled_for IS NOT NULL")}
    crons = {"foo": EVERY_S, "effects": EVERY_S, "flaky": EVERY_2S}
    for job, first_cron in crons.items():
        changes = [(e["at"], json.loads(e["detail"])["new"]["cron"] if isinstance(e["detail"], str)
                    else e["detail"]["new"]["cron"]) for e in events
                   if e["job"] == job and e["action"].startswith("schedule-")]
        boundaries = [at for at, _ in changes]
        paused: list[tuple[datetime, datetime]] = []
        since: datetime | None = None
        for e in (e for e in events if e["job"] == job):
            if e["action"] == "pause":
                since = since or e["at"]
                boundaries.append(e["at"])
                if e["resume_at"] is not None:
                    boundaries.append(e["resume_at"])
            elif e["action"] in ("resume", "auto-resume") and since is not None:
                paused.append((since, e["at"]))
                boundaries.append(e["at"])
                since = None
        if since is not None:
            paused.append((since, datetime.max.replace(tzinfo=UTC)))
        skipped = set()
        for e in events:
            if e["job"] == job and e["action"] == "skip":
                detail = e["detail"] if isinstance(e["detail"], dict) else json.loads(e["detail"])
                skipped.add(datetime.fromisoformat(detail["skipped"]))
        candidates = sorted(set(_instants(EVERY_S, start, end)))
        for instant in candidates:
            cron = first_cron
            for at, new in changes:
                if at <= instant:
                    cron = new
            if instant not in set(_instants(cron, instant - timedelta(seconds=1), instant)):
                continue
            if any(abs((instant - b).total_seconds()) < AMBIGUOUS_S for b in boundaries):
                continue
            f.checked_fires += 1
            if (job, instant) in ran or instant in skipped:
                continue
            if any(a <= instant < b for a, b in paused):
                continue
            if any(m["job"] == job and (m["scheduled_for"] == instant or (
                    m["reason"] == "down" and m["scheduled_for"] <= instant <= m["reported_at"])) for m in missed):
                continue
            f.unaccounted.append(f"{job} {instant.isoformat()}")

    # Messages written up to the cutoff (5 s after the faults): each, or the folded line that
    # carries it, reached the sink.
    rows = await db.fetch("SELECT id, payload ->> 'text' AS text, delivered_at, failed_at, last_error "
                          "FROM foojob_outbox WHERE channel IS NULL AND created_at <= $1 ORDER BY id", cutoff)
    f.messages = len(rows)
    f.undelivered = sum(1 for r in rows if r["delivered_at"] is None)
    folded = ("folded into", "a reply folded")  # carried by the line they were folded into
    wanted = Counter(r["text"] for r in rows if not (r["last_error"] or "").startswith(folded))
    for text, n in wanted.items():
        got = sink.texts.get(text, 0)
        if got < n:
            f.lost.append(text[:100])
        f.delivered_twice += max(0, got - n)
    f.tracebacks = sum(p.read_text(errors="replace").count("Traceback") for p in logs.glob("*.log"))
    return f


async def sabotage(db: asyncpg.Connection, sink: Sink, start: datetime, end: datetime) -> None:
    """Break each promise once, behind foojob's back (``CHAOS_SABOTAGE=all``): a run forgotten (a
    fire unaccounted, and its side effect now looks like a second run), a message the sink never
    got. tests/test_chaos.py checks that the harness says so."""
    await db.execute("DELETE FROM foojob_runs WHERE id = (SELECT min(id) FROM foojob_runs WHERE job = 'effects' "
                     "AND scheduled_for > $1::timestamptz AND scheduled_for < $2)", start, end)
    text = next(t for t in sink.texts if "foo succeeded" in t)
    del sink.texts[text]


async def settle(db: asyncpg.Connection, cutoff: datetime, within_s: float) -> None:
    """Recovery: wait (up to ``within_s``) until every message written before ``cutoff`` is
    delivered and every retry of a fire before it is made (the jobs go on meanwhile: what they
    write later is not waited for, nor checked)."""
    deadline = now() + within_s
    while now() < deadline:
        left = await db.fetchval("SELECT (SELECT count(*) FROM foojob_outbox WHERE delivered_at IS NULL "
                                 "AND failed_at IS NULL AND created_at <= $1) + "
                                 "(SELECT count(*) FROM foojob_retries WHERE scheduled_for <= $1)", cutoff)
        if left == 0:
            return
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def scratch(server: str) -> AsyncIterator[str]:
    name = f"foojob_chaos_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> int:
    seconds = float(os.environ.get("CHAOS_S") or 300)
    count = int(os.environ.get("CHAOS_REPLICAS") or 3)
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 10**9))
    chaos = Chaos(seed, seconds, count)
    print(f"chaos: {count} replicas, {seconds:.0f} s of faults, seed {seed} (CHAOS_SEED={seed} replays them)",
          flush=True)
    server, embedded = await server_url()
    workdir = Path(tempfile.mkdtemp(prefix="foojob-chaos-"))
    replicas: list[Replica] = []
    try:
        async with scratch(server) as name, aiohttp.ClientSession() as http:
            direct = with_db(server, name)
            db = await asyncpg.connect(direct)
            await db.execute("CREATE TABLE chaos_effects (id BIGSERIAL PRIMARY KEY, job TEXT NOT NULL, "
                             "at TIMESTAMPTZ NOT NULL DEFAULT now())")
            proxy = Proxy(direct)
            await proxy.start()
            sink = Sink()
            await sink.start()
            jobs = workdir / "jobs"
            jobs.mkdir()
            for job, text in JOBS.items():
                (jobs / f"{job}.sql").write_text(text)
            parts = urlsplit(direct)
            user = parts.username or "postgres"
            auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
            env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
            env.update(DATABASE_URL=f"postgresql://{auth}127.0.0.1:{proxy.listen_port}/{name}",
                       SLACK_WEBHOOK_URL=sink.url, FOOJOB_CRON=EVERY_S, FOOJOB_JOBS_DIR=str(jobs),
                       HOST="127.0.0.1", PORT="0", LOG_LEVEL="INFO")
            replicas = [Replica(f"r{i + 1}", env, workdir) for i in range(count)]
            for replica in replicas:
                replica.start()
            for replica in replicas:
                await healthy(http, replica)
            chaos.started_at = now()
            window_start = datetime.now(UTC) + timedelta(seconds=2)
            chaos.note(f"{count} replicas up; faults for {seconds:.0f} s")
            await faults(http, chaos, replicas, proxy, now() + seconds)
            window_end = datetime.now(UTC)
            chaos.note("faults over: every replica up, the database reachable; recovering")
            await asyncio.sleep(5)  # fires due at the end of the window run (or are reported) meanwhile
            cutoff = datetime.now(UTC)
            await settle(db, cutoff, 90)
            for replica in replicas:
                replica.signal(signal.SIGTERM)
            exits = [await stopped(replica, 30) for replica in replicas]  # (the loop serves the proxy meanwhile)
            chaos.note(f"replicas stopped (exit statuses {exits})")
            if os.environ.get("CHAOS_SABOTAGE") == "all":  # the harness's own test: it must see these
                await sabotage(db, sink, window_start, window_end)
            findings = await check(db, sink, workdir, (window_start, window_end), cutoff)
            await db.close()
            await proxy.stop()
            await sink.stop()
    finally:
        for replica in replicas:
            if replica.alive and replica.proc is not None:
                replica.proc.kill()
        if embedded is not None:
            embedded.__exit__(None, None, None)
    return report(chaos, findings, exits, workdir)


def report(chaos: Chaos, f: Findings, exits: list[int], workdir: Path) -> int:
    bound = chaos.cuts + chaos.kills
    rows = [
        ("fires run twice", f.twice, "0", f.twice == 0),
        ("fires unaccounted (not run, paused, skipped or reported missed)", len(f.unaccounted), "0",
         not f.unaccounted),
        ("messages lost", len(f.lost), "0", not f.lost),
        ("messages undelivered after recovery", f.undelivered, "0", f.undelivered == 0),
        ("messages delivered twice", f.delivered_twice, f"≤ {bound} (cuts + kills)", f.delivered_twice <= bound),
        ("tracebacks in the logs", f.tracebacks, "0", f.tracebacks == 0),
        ("replicas that did not stop cleanly at the end", sum(1 for e in exits if e != 0), "0",
         all(e == 0 for e in exits)),
    ]
    print()
    print(f"chaos: {chaos.replicas} replicas, {chaos.seconds:.0f} s, seed {chaos.seed}: {chaos.kills} kills, "
          f"{chaos.cuts} database cuts; {f.runs} runs, {f.checked_fires} fires checked, {f.messages} messages")
    for what, value, target, ok in rows:
        print(f"  {'✓' if ok else '✗'} {what}: {value} (target {target})")
    failed = [r for r in rows if not r[3]]
    if f.unaccounted:
        print("  unaccounted: " + ", ".join(f.unaccounted[:20]))
    if f.lost:
        print("  lost: " + " | ".join(f.lost[:10]))
    if failed:
        print(f"\nchaos FAILED (seed {chaos.seed}; replay with CHAOS_SEED={chaos.seed}); the logs are in {workdir}")
        print("timeline of faults:")
        for line in chaos.timeline:
            print("  " + line)
        return 1
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    print("chaos passed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
