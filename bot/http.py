"""The HTTP API, compatible with the original Go service (``/runNow``, ``/pause``, ``/resume``,
``/isRunning``) plus ``/status``, ``/runs``, ``/schedule``, ``/skip``, ``/healthz``, ``/metrics`` and
``/openapi.json`` (the document of all of them, :mod:`bot.openapi`). Those act on
``FOOJOB_DEFAULT_JOB`` (or ``?job=``); ``/jobs`` lists every job, and ``/jobs/{job}/…`` has each
verb for the job named.

A thin adapter over :class:`bot.control.Control`: it parses requests, checks the caller, and turns
results and the package's errors into JSON (camelCase keys, ``{"error": …}`` on failure; never a
stack trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot import __version__
from bot.config import Secret
from bot.control import Control
from bot.durations import parse_duration
from bot.errors import AlreadyRunning, BadInput, Conflict, DatabaseUnavailable, UnknownJob
from bot.metrics import Metrics
from bot.openapi import document
from bot.schedules import MAX_NEXT
from bot.shapes import job_json, run_json, schedule_json, status_json
from bot.timefmt import rfc3339

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SlackHealth = Callable[[], Awaitable[str]]  # "connected" | "disconnected" | "down"

class Backend:
    """What the API serves from; ``control`` is None until the database is ready, ``slack_health``
    None when the Slack surface is off."""

    control: Control | None = None
    slack_health: SlackHealth | None = None
    slack_enabled: bool = False
    channels: bool = False  # messages go to channels (SLACK_CHANNEL): /healthz says whether they can


BACKEND: web.AppKey[Backend] = web.AppKey("backend", Backend)
TOKEN: web.AppKey[Secret | None] = web.AppKey("token", object)  # type: ignore[arg-type]
TZ: web.AppKey[ZoneInfo] = web.AppKey("tz", ZoneInfo)
# The HOST the service was told to bind (a name there is this machine's name too).
BOUND_HOST: web.AppKey[str | None] = web.AppKey("bound_host", object)  # type: ignore[arg-type]
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
OPENAPI: web.AppKey[str] = web.AppKey("openapi", str)


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class Refused(Exception):
    """A request refused with a status of its own (not one of the package's errors)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        if exc.status == 405 and allow is not None:
            # RFC 9110: a 405 names the methods the resource takes.
            return error(405, f"{exc.reason}: {request.path} takes {allow.replace(',', ', ')}", Allow=allow)
        return error(exc.status, exc.reason)
    except Refused as exc:
        return error(exc.status, str(exc))
    except UnknownJob as exc:
        return error(404, str(exc))
    except BadInput as exc:
        return error(400, str(exc))
    except (AlreadyRunning, Conflict) as exc:
        return error(409, str(exc))
    except DatabaseUnavailable as exc:
        return error(503, str(exc))
    except ConnectionResetError:  # aiohttp's "Connection lost" while the body is read: nothing was done
        log.info("%s %s: the client went away before its request was read", request.method, request.path)
        return error(400, "the request was cut short")
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error(500, "internal error (see the service's log)")


def _authorised(request: web.Request) -> bool:
    token = request.app[TOKEN]
    if token is not None:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        try:
            presented = value.strip().encode()
        except UnicodeError:  # bytes that are not UTF-8 (kept as surrogates by the parser): not the token
            return False
        return scheme.lower() == "bearer" and hmac.compare_digest(presented, token.reveal().encode())
    # No token configured: only clients on this machine may act.
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _refuse(request: web.Request) -> web.Response:
    if request.app[TOKEN] is not None:
        return error(401, "missing or wrong bearer token (Authorization: Bearer <CONTROL_API_TOKEN>)",
                     **{"WWW-Authenticate": 'Bearer realm="foojob"'})
    return error(401, "without CONTROL_API_TOKEN only clients on this machine (loopback) may call this")


def _host_name(value: str) -> str:
    """The host of a ``Host`` header or an origin's netloc, without the port: ``[::1]:80`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def _local_name(host: str, bound: str | None) -> bool:
    if host == "localhost" or (bound is not None and host == bound.lower()):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cross_site(request: web.Request) -> str | None:
    """Without a token, why a browser page must not be taken for a local client (None: it is not
    one). A page elsewhere can make a browser POST to 127.0.0.1 (CSRF) and says so in ``Origin``;
    a DNS-rebinding page reaches us under its own name, which ``Host`` carries."""
    try:
        host = _host_name(request.headers.get("Host", ""))
        origin = request.headers.get("Origin")
    except UnicodeError:
        return "unreadable Host or Origin"
    if not _local_name(host, request.app[BOUND_HOST]):
        return f"Host {host[:60]!r} is not this machine's name or address"
    if origin is not None:
        # Another port is another site to a browser: compare host and port, as given.
        scheme, sep, rest = origin.strip().lower().partition("://")
        default = {"http": ":80", "https": ":443"}.get(scheme, "")
        seen = request.headers.get("Host", "").strip().lower()
        if not sep or _with_port(rest.split("/")[0], default) != _with_port(seen, default):
            return f"Origin {origin[:60]!r} is another site"
    return None


def _with_port(netloc: str, default: str) -> str:
    has_port = netloc.rsplit("]", 1)[-1].count(":") == 1 if netloc.startswith("[") else netloc.count(":") == 1
    return netloc if has_port else netloc + default


def protected(handler: Handler) -> Handler:
    async def check(request: web.Request) -> web.StreamResponse:
        if not _authorised(request):
            log.warning("refused %s %s from %s", request.method, request.path, request.remote)
            return _refuse(request)
        if request.app[TOKEN] is None and (why := _cross_site(request)) is not None:
            log.warning("refused %s %s: %s (a browser page? set CONTROL_API_TOKEN to call from elsewhere)",
                        request.method, request.path, why)
            return error(403, f"refused: {why}. Without CONTROL_API_TOKEN only local clients may call this "
                              "(curl http://127.0.0.1:…), never a web page.")
        return await handler(request)

    return check


def _control(request: web.Request) -> Control:
    control = request.app[BACKEND].control
    if control is None:
        raise DatabaseUnavailable("starting up: the database is not ready yet")
    return control


def _job(request: web.Request) -> str:
    """The job a request is about: ``/jobs/{job}/…``, else ``?job=``, else FOOJOB_DEFAULT_JOB (the
    version 1 endpoints act on it)."""
    named = request.match_info.get("job", request.query.get("job"))
    return _control(request).default_job if named is None else named  # "?job=" names no job: 404


UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})  # ASCII is UTF-8


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object ({} when empty). JSON is UTF-8 (RFC 8259): another declared charset
    is 415, undecodable bytes, bad JSON, deep nesting or another kind of value 400."""
    charset = request.charset
    if charset and charset.strip().lower() not in UTF8:
        raise Refused(415, f"the body must be JSON in UTF-8, not charset {charset[:40]!r}")
    raw = await request.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput("the body is not UTF-8 (JSON must be)") from None
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except RecursionError:
        raise BadInput("the body is nested too deeply") from None
    except json.JSONDecodeError:
        raise BadInput("the body is not valid JSON") from None
    except ValueError:  # an integer of over 4300 digits (sys.get_int_max_str_digits)
        raise BadInput("the body holds a number too long to read") from None
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


def _fields(body: dict[str, Any], expected: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(expected))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5]) + (", …" if len(unknown) > 5 else "")
        raise BadInput(f"unknown field(s) [{names}]; expected {' and '.join(map(repr, expected))}")


def _text(body: dict[str, Any], name: str, what: str) -> str | None:
    """A string field (None when absent or null) that PostgreSQL can store: no NUL, no lone surrogate."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name!r} must be {what}")
    if "\x00" in value:
        raise BadInput(f"{name!r} contains a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:  # "\ud800" in JSON decodes to a lone surrogate: not text
        raise BadInput(f"{name!r} contains a lone surrogate (an escape \\ud800-\\udfff without its pair)") from None
    return value


@protected
async def run_now(request: web.Request) -> web.Response:
    record = await _control(request).run_now(_job(request), by="http")
    if record.status == "failed":
        return error(500, record.error or "the job failed")
    return web.json_response(record.result)


@protected
async def pause(request: web.Request) -> web.Response:
    body = await _json_body(request)
    _fields(body, ("for", "reason"))
    duration_text = _text(body, "for", "a string such as \"2h\" or \"1h30m\"")
    reason = _text(body, "reason", "a string")
    # Left out (or null): until resumed. Given, it must be a duration: "" is not "forever".
    duration = parse_duration(duration_text) if duration_text is not None else None
    await _control(request).pause(_job(request), by="http", duration=duration, reason=reason)
    return web.json_response({"message": "ok"})


@protected
async def resume(request: web.Request) -> web.Response:
    await _control(request).resume(_job(request), by="http")
    return web.json_response({"message": "ok"})


async def list_jobs(request: web.Request) -> web.Response:
    control = _control(request)
    jobs = [job_json(await control.status(name), control.spec(name), request.app[TZ]) for name in control.jobs]
    return web.json_response({"jobs": jobs})


async def get_job(request: web.Request) -> web.Response:
    control, name = _control(request), _job(request)
    return web.json_response(job_json(await control.status(name), control.spec(name), request.app[TZ]))


async def is_running(request: web.Request) -> web.Response:
    state = await _control(request).state(_job(request))
    return web.json_response({"message": "false" if state.paused else "true"})


async def status(request: web.Request) -> web.Response:
    result = await _control(request).status(_job(request))
    return web.json_response(status_json(result, request.app[TZ]))


async def runs(request: web.Request) -> web.Response:
    limit_text = request.query.get("limit", "20")
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 6):
        raise BadInput("limit must be a whole number")
    # /jobs/{job}/runs: that job's; /runs: every job's, unless ?job= names one.
    job = request.match_info.get("job", request.query.get("job"))
    records = await _control(request).history(job, int(limit_text))
    return web.json_response({"runs": [run_json(r, request.app[TZ]) for r in records]})


def _next_count(request: web.Request) -> int:
    text = request.query.get("next", "5")
    if not (text.isascii() and text.isdigit() and len(text) <= 3 and 1 <= int(text) <= MAX_NEXT):
        raise BadInput(f"next must be a whole number from 1 to {MAX_NEXT}")
    return int(text)


async def get_schedule(request: web.Request) -> web.Response:
    count = _next_count(request)
    return web.json_response(schedule_json(await _control(request).schedule(_job(request)), count))


@protected
async def put_schedule(request: web.Request) -> web.Response:
    body = await _json_body(request)
    _fields(body, ("cron", "timezone"))
    cron = _text(body, "cron", "a string: a crontab expression such as \"*/10 * * * *\"")
    if cron is None:
        raise BadInput("'cron' is required: a crontab expression such as \"*/10 * * * *\"")
    timezone = _text(body, "timezone", "a string: an IANA zone name such as \"Europe/London\"")
    schedule = await _control(request).set_schedule(_job(request), cron, timezone, by="http")
    return web.json_response(schedule_json(schedule))


@protected
async def delete_schedule(request: web.Request) -> web.Response:
    schedule = await _control(request).reset_schedule(_job(request), by="http")
    return web.json_response(schedule_json(schedule))


@protected
async def post_skip(request: web.Request) -> web.Response:
    instant = await _control(request).skip(_job(request), by="http")
    return web.json_response({"skipped": rfc3339(instant, request.app[TZ])})


@protected
async def delete_skip(request: web.Request) -> web.Response:
    await _control(request).unskip(_job(request), by="http")
    return web.json_response({"skipped": None})


async def healthz(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    if backend.slack_health is not None:
        slack = await backend.slack_health()
    else:
        slack = "disconnected" if backend.slack_enabled else "off"  # enabled: still starting
    try:
        await asyncio.wait_for(_control(request).ping(), timeout=3)
        database = "ok"
    except (TimeoutError, DatabaseUnavailable):
        database = "unreachable" if request.app[BACKEND].control else "starting"
    healthy = database == "ok" and slack != "down"
    body = {"status": "ok" if healthy else "unhealthy", "database": database,
            "slack": "disconnected" if slack == "down" else slack}
    if backend.channels and database == "ok":
        # A channel the bot cannot post in does not make the service unhealthy (the rest works, the
        # messages wait aside with their reason), but it is said here, and in the log.
        with contextlib.suppress(TimeoutError, DatabaseUnavailable):
            problem = await asyncio.wait_for(_control(request).channel_problem(), timeout=3)
            body["slackChannel"] = "ok" if problem is None else problem
    return web.json_response(body, status=200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    body = await request.app[METRICS].render(backend.control, backend.slack_health)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=request.app[OPENAPI], content_type="application/json")


def build_app(backend: Backend, *, token: Secret | None, tz: ZoneInfo, metrics_: Metrics, jobs: list[str],
              default_job: str, bound_host: str | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[BACKEND] = backend
    app[TOKEN] = token
    app[BOUND_HOST] = bound_host
    app[TZ] = tz
    app[METRICS] = metrics_
    app[OPENAPI] = json.dumps(document(jobs, default_job, __version__), indent=1)
    # The version 1 endpoints act on FOOJOB_DEFAULT_JOB (or ?job=); /jobs/{job}/… on the job named.
    for prefix in ("", "/jobs/{job}"):
        app.router.add_post(f"{prefix}/runNow", run_now)
        app.router.add_post(f"{prefix}/pause", pause)
        app.router.add_post(f"{prefix}/resume", resume)
        app.router.add_get(f"{prefix}/runs", runs)
        app.router.add_get(f"{prefix}/schedule", get_schedule)
        app.router.add_put(f"{prefix}/schedule", put_schedule)
        app.router.add_delete(f"{prefix}/schedule", delete_schedule)
        app.router.add_post(f"{prefix}/skip", post_skip)
        app.router.add_delete(f"{prefix}/skip", delete_skip)
    app.router.add_get("/isRunning", is_running)
    app.router.add_get("/status", status)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{job}", get_job)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app
