"""PostgreSQL: named queries, the pool, migrations, and the embedded server.

SQL lives in ``sql/*.sql`` as ``-- name: x`` blocks (the sqlc convention the original service
used) and ``sql/migrations/NNN_*.sql``; Python holds no SQL text but this loader. The repository
keeps ``sql/`` at its top level; a built distribution carries it inside the package as ``bot/sql``
(pyproject.toml maps it there), so an install from a wheel works from any directory.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import importlib.util
import json
import logging
import math
import os
import re
import socket
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from bot.errors import ConfigError, DatabaseUnavailable, FoojobError

log = logging.getLogger(__name__)


def sql_dir() -> Traversable:
    """Where the SQL is: ``bot/sql`` inside an installed distribution (a wheel, ``pip install .``,
    ``pip install git+…``), else ``sql/`` beside ``bot/`` (a checkout: an editable install, the
    tests, a Procfile platform running the repository as it is)."""
    shipped = importlib.resources.files("bot") / "sql"
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parent.parent / "sql"
    if checkout.is_dir():
        return checkout
    raise FoojobError(f"the SQL files are missing: neither {shipped} nor {checkout} exists; "
                      "reinstall foojob (pip install --force-reinstall foojob)")


# What a lost or refused connection raises (as opposed to an error in a statement): the server is
# down, restarting, or cut us off. asyncpg raises InternalClientError when a terminated idle
# connection is next used.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
)
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


# After the server refused a connection for its limit, a pool grows back to its size this often.
GROW_BACK_S = 60.0


class _Gate:
    """How many of a pool's connections may be out at once: its size — until the server refuses a
    new one for its connection limit (``too many connections``, 53300). That is not an outage: the
    pool then uses the connections it has (asyncpg hands out a live connection before it opens
    one), its callers wait for one in order, and it tries its full size again a minute later; one
    log line a minute says so."""

    def __init__(self, size: int) -> None:
        self.size = self.cap = size
        self.out = 0
        self.on_refused: list[Callable[[], None]] = []  # told when the cap shrinks (bot.standby)
        self.refused_at = -math.inf
        self._said_at = -math.inf
        self._free = asyncio.Condition()

    def current(self) -> int:
        """The cap now: back to the full size a minute after the last refusal."""
        if self.cap < self.size and asyncio.get_running_loop().time() - self.refused_at >= GROW_BACK_S:
            self.cap = self.size
        return self.cap

    async def enter(self) -> None:
        async with self._free:
            self.current()
            try:
                await self._free.wait_for(lambda: self.out < self.cap)
            except asyncio.CancelledError:
                # A notify() that reached this waiter as it was cancelled is passed on (Python 3.11
                # loses it otherwise: gh-112202), or the next caller in line would wait for nothing.
                if self.out < self.cap:
                    self._free.notify()
                raise
            self.out += 1

    async def leave(self) -> None:
        async with self._free:
            self.out -= 1
            self._free.notify()

    def refused(self, live: int, limit_error: str) -> None:
        loop = asyncio.get_running_loop()
        self.refused_at = loop.time()
        self.cap = max(1, live)
        for told in self.on_refused:
            told()
        if loop.time() - self._said_at >= 60.0:
            self._said_at = loop.time()
            log.warning("the database refuses more connections (%s): using the %d this process has; the "
                        "rest wait for one (size DATABASE_POOL_SIZE to the plan: replicas × (pool + 1) ≤ "
                        "its limit)", limit_error, self.cap)


# Each pool's gate, by id (an asyncpg Pool takes no attributes, nor weak references); the pool is
# kept with it so that its id is never another pool's.
_gates: dict[int, tuple[asyncpg.Pool, _Gate]] = {}


def _gate(pool: asyncpg.Pool) -> _Gate:
    kept = _gates.get(id(pool))
    if kept is None or kept[0] is not pool:
        kept = _gates[id(pool)] = (pool, _Gate(pool.get_max_size()))
    return kept[1]


def usable(pool: asyncpg.Pool) -> int:
    """How many of the pool's connections may be out at once now: its size, or fewer while the
    server refuses more (:class:`_Gate`)."""
    return _gate(pool).current()


def on_refused(pool: asyncpg.Pool, told: Callable[[], None]) -> None:
    """Call ``told`` whenever the server refuses the pool a connection for its limit."""
    _gate(pool).on_refused.append(told)


@asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; a database that cannot be reached raises DatabaseUnavailable.

    Getting a connection can fail with any PostgreSQL error (``database is not currently accepting
    connections``, authentication): all of them mean the database is unavailable — but for the
    server's connection limit while the pool has connections of its own (:class:`_Gate`). Once
    connected, only connection errors do; an error in a statement stays what it is.
    """
    gate = _gate(pool)
    await gate.enter()
    try:
        while True:
            try:
                conn = await pool.acquire()
                break
            except asyncpg.TooManyConnectionsError as exc:
                live = pool.get_size()
                if live == 0:  # nothing of its own to use: unavailable indeed
                    raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
                gate.refused(live, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                await gate.leave()  # wait in line for one of the connections the pool has
                await gate.enter()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except BaseException:
        await gate.leave()
        raise
    try:
        yield conn
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    finally:
        await pool.release(conn)
        await gate.leave()


def _sql_files(directory: Traversable) -> list[Traversable]:
    return sorted((f for f in directory.iterdir() if f.name.endswith(".sql") and f.is_file()), key=lambda f: f.name)


class Queries(Mapping[str, str]):
    """Every ``-- name:`` block of ``sql/*.sql``, by name. A missing name is a KeyError at once;
    finding no queries at all refuses to start (an install without its SQL would otherwise fail at
    the first query, with a bare KeyError)."""

    def __init__(self, directory: Traversable | None = None) -> None:
        if directory is None:
            directory = sql_dir()
        self._queries: dict[str, str] = {}
        for path in _sql_files(directory):
            text = path.read_text(encoding="utf-8")
            names = list(_NAME.finditer(text))
            for match, following in zip(names, [*names[1:], None], strict=True):
                body = text[match.end(): following.start() if following else len(text)].strip()
                if match.group(1) in self._queries:
                    raise FoojobError(f"query {match.group(1)!r} is defined twice (in {path.name})")
                self._queries[match.group(1)] = body
        if not self._queries:
            raise FoojobError(f"no SQL queries (-- name: blocks in *.sql) found in {directory}: "
                              "the installation is incomplete; reinstall foojob")

    def __getitem__(self, name: str) -> str:
        return self._queries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(directory: Traversable | None = None) -> list[Migration]:
    if directory is None:
        directory = sql_dir() / "migrations"
    found = []
    for path in _sql_files(directory) if directory.is_dir() else []:
        number, _, name = path.name.removesuffix(".sql").partition("_")
        found.append(Migration(int(number), name, path.read_text(encoding="utf-8")))
    if not found:
        raise FoojobError(f"no migrations (NNN_name.sql) found in {directory}: the installation is incomplete; "
                          "reinstall foojob")
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise FoojobError(f"two migrations share a number in {directory}")
    return found


async def schema_missing(conn: asyncpg.Connection, queries: Queries) -> list[int]:
    """The migrations this database still lacks (all of them: it was never set up). Reads only."""
    applied: set[int] = set()
    if await conn.fetchval("SELECT to_regclass('foojob_schema_migrations') IS NOT NULL"):
        applied = {row["version"] for row in await conn.fetch(queries["migrations_applied"])}
    return [m.version for m in migrations() if m.version not in applied]


async def migrate(conn: asyncpg.Connection, queries: Queries) -> list[int]:
    """Apply the migrations not yet applied, each in its own transaction, under an advisory lock
    so that replicas starting together take turns. Returns the versions applied now."""
    applied_now: list[int] = []
    await conn.execute(queries["migrations_lock"])
    try:
        await conn.execute(queries["migrations_table"])
        done = {row["version"] for row in await conn.fetch(queries["migrations_applied"])}
        for migration in migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(queries["migrations_record"], migration.version, migration.name)
            log.info("applied migration %03d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        await conn.execute(queries["migrations_unlock"])
    return applied_now


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def server_settings() -> dict[str, str]:
    return {
        # Each process names its connections "foojob:<pid>", so an operator (or a test) looking
        # at pg_stat_activity can tell which process holds what.
        "application_name": f"foojob:{os.getpid()}",
        # If a replica dies mid-run (kill -9, a lost machine), its backend would otherwise hold the
        # run's locks until it next tried to talk to the dead client, which a run waiting on a lock
        # never does. Checking every second lets another replica take the fire over promptly.
        # (PostgreSQL 14+.)
        "client_connection_check_interval": "1000",
    }


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, server_settings=server_settings())
    await _init_connection(conn)
    return conn


# Connections of the pool beyond the one in use are closed after this long idle: a burst (a slash
# command while a fire waits for another replica's run) borrows one, and gives it back to the server
# soon after, so a replica holds two connections (this pool's one and the LISTEN one) at rest.
POOL_IDLE_S = 10.0
DEFAULT_POOL_SIZE = 5  # 3 replicas × (5 + LISTEN) = 18: a 20-connection plan, with 50 jobs due at once


async def _keep_as_is(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, which is nothing: asyncpg's default sends one more statement per
    release (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), a transaction
    of its own, each time. Nothing foojob does on a pooled connection outlives its transaction (and
    jobs are asked the same: bot.model.JobContext): every setting is ``set_config(…, true)`` (SET
    LOCAL), every lock but one is ``pg_advisory_xact_lock``, LISTEN has a connection of its own, and
    no cursor is declared. The one session lock (retention's, bot/retention.py) is released there,
    or its connection is closed. (asyncpg still rolls back a transaction left open before calling
    this: ``PoolConnectionHolder.release``.)"""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = DEFAULT_POOL_SIZE) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        reset=_keep_as_is,
        max_inactive_connection_lifetime=POOL_IDLE_S,
        server_settings=server_settings(),
        # A dead server must fail a request quickly rather than hang it.
        timeout=5,
        command_timeout=60,
    )


# What the server (or the client library) says of a DATABASE_URL that can never work: waiting
# cannot help, so start-up stops at once saying why.
_NEVER_WORKS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidPasswordError,                     # 28P01 password authentication failed
    asyncpg.InvalidAuthorizationSpecificationError,   # 28000 no such role, no pg_hba entry
    asyncpg.InvalidCatalogNameError,                  # 3D000 database does not exist
    asyncpg.UndefinedObjectError,                     # 42704 unrecognized configuration parameter
    asyncpg.InvalidParameterValueError,               # 22023 a parameter with a bad value
    asyncpg.exceptions.ClientConfigurationError,      # a DSN asyncpg cannot read
    ValueError,
)
_UNKNOWN_HOST = (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))


def describe_target(dsn: str) -> str:
    """``host:port/database`` of a DSN, never its password."""
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        host = parts.hostname or query.get("host", ["localhost"])[0]
        port = parts.port or query.get("port", ["5432"])[0]
        database = parts.path.lstrip("/") or query.get("dbname", [parts.username or "postgres"])[0]
    except ValueError:
        return "the database of DATABASE_URL"
    return f"{host}:{port}/{database}"


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def wait_for_database(dsn: str, *, deadline_s: float = 30.0, quiet: bool = False) -> None:
    """Wait until the server answers (a platform may start the app before its database), one
    warning line per attempt naming the target; a DATABASE_URL that can never work (a wrong
    password, no such database, an unknown host, a bad parameter) fails at once, saying why."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    delay = 0.2
    target = describe_target(dsn)
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except _NEVER_WORKS as exc:
            raise FoojobError(f"cannot use the database at {target}: {_reason(exc)}") from None
        except socket.gaierror as exc:
            if exc.errno in _UNKNOWN_HOST:
                raise FoojobError(f"cannot use the database at {target}: unknown host ({exc.strerror})") from None
            failure: BaseException = exc
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if "rejected SSL upgrade" in str(exc):  # sslmode=require against a server without SSL: never works
                raise FoojobError(f"cannot use the database at {target}: the server does not offer SSL, which "
                                  "DATABASE_URL's sslmode requires (sslmode=prefer takes it when offered)") from None
            failure = exc
        else:
            await conn.close()
            return
        if loop.time() + delay > end:
            raise FoojobError(f"the database at {target} did not answer within {deadline_s:.0f} s: "
                              f"{_reason(failure)}") from None
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "the database at %s is not answering yet (%s); trying again", target, _reason(failure))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def require_embedded() -> None:
    """Raise ConfigError (exit 2) unless the embedded PostgreSQL can start: it is the optional extra
    ``foojob[embedded]`` (pgserver, whose wheels exist for CPython 3.11-3.12 on x86-64 Linux and
    macOS only), needed only when DATABASE_URL is unset."""
    if importlib.util.find_spec("pgserver") is None:
        raise ConfigError("DATABASE_URL", "not set, and the embedded PostgreSQL is not installed: "
                                          "set DATABASE_URL=postgresql://user@host:5432/dbname, "
                                          "or pip install 'foojob[embedded]'")


class EmbeddedPostgres:
    """A private PostgreSQL (pgserver) under ``data_dir``, on a Unix socket only.

    pgserver's calls block (they run pg_ctl), so they run in a thread. As root, pgserver runs the
    server as a ``pgserver`` system user it creates. The server is stopped when the last process
    using it lets go, so a CLI command against a running service leaves it up.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    async def start(self) -> str:
        require_embedded()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.to_thread(self._start)
        uri: str = self._server.get_uri()
        return uri

    def _start(self) -> Any:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver only keeps a lock file there.
            warnings.simplefilter("ignore")
            # Imported by name: the extra may be absent (and so its types, for mypy).
            pgserver = importlib.import_module("pgserver")
            return pgserver.get_server(self.data_dir, cleanup_mode="stop")

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None
