"""The OpenAPI document (``GET /openapi.json``) and what a property-based API fuzzer, schemathesis,
finds when it is let loose on a real service with it: no 5xx, every answer as documented.

Schemathesis runs as its own process (its CLI), against ``python -m bot`` started by the fixtures:
its runner is synchronous and brings its own warnings, and neither belongs in this event loop.
The bad inputs it found once (and the ones SPEC.md names) are replayed here as plain requests too,
so that they stay fixed whatever the fuzzer happens to generate.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot import __version__
from bot.http import Backend, build_app
from bot.metrics import Metrics
from bot.openapi import document
from jobs import DEFAULT_JOB, JOBS
from tests.conftest import Service, get_json

NEVER_SOON = "0 0 1 1 *"  # the schedule stays out of the fuzzer's way
TOKEN = "s3cret-token-0123456789"
# A second job, so that the fuzzer's {job} has two names to take, and an SQL job's result to check.
SQL_JOB = ("rollup", f"-- cron: {NEVER_SOON}\n-- description: a second job\nSELECT 1 AS one;\n")

# Schemathesis' settings. The document says exactly which zones and pause durations are taken (an
# enum, a pattern): a request that fits it must be accepted. JSON Schema cannot say which strings
# are a crontab expression that fires: for the schedule's PUT only, a 400 to a request that fits
# the schema is a correct answer (the rest of the list is schemathesis' default: refused
# credentials, a run in progress).
CONFIG = """
[[operations]]
include-name = ["PUT /schedule", "PUT /jobs/{job}/schedule"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "409"]
"""
# No DELETE here deletes a resource: DELETE /jobs/{job}/schedule puts the configured schedule back,
# DELETE /jobs/{job}/skip clears a skip; what follows is still there to GET. Schemathesis' stateful
# phase would take them for deletions (use_after_free).
NOT_DELETIONS = ("--exclude-checks", "use_after_free")
SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def _jobs_dir(tmp_path: Path) -> str:
    """A FOOJOB_JOBS_DIR holding SQL_JOB: the service runs foo and rollup."""
    directory = tmp_path / "jobs"
    directory.mkdir()
    (directory / f"{SQL_JOB[0]}.sql").write_text(SQL_JOB[1])
    return str(directory)


def test_the_document_covers_every_route_of_the_app() -> None:
    app = build_app(Backend(), token=None, tz=ZoneInfo("UTC"), metrics_=Metrics(__version__), jobs=list(JOBS),
                    default_job=DEFAULT_JOB)
    routes = {(resource.canonical, route.method.lower()) for resource in app.router.resources()
              for route in resource if route.method != "HEAD"}
    doc = document(JOBS, DEFAULT_JOB, __version__)
    documented = {(path, method) for path, operations in doc["paths"].items() for method in operations}
    assert documented == routes
    assert doc["openapi"].startswith("3.") and doc["info"]["version"] == __version__
    assert any(path.startswith("/jobs/{job}/") for path, _ in routes)

    # The job: a name of the service's jobs, in the path (/jobs/{job}/…) or the query (the version 1
    # paths, defaulting to FOOJOB_DEFAULT_JOB); an unknown one is a documented 404 wherever it can come.
    doc = document(["foo", "rollup"], "rollup", __version__)
    parameters = doc["components"]["parameters"]
    assert parameters["jobInPath"] == {"name": "job", "in": "path", "required": True,
                                       "schema": {"type": "string", "enum": ["foo", "rollup"]},
                                       "description": parameters["jobInPath"]["description"]}
    assert parameters["job"]["in"] == "query" and parameters["job"]["schema"]["default"] == "rollup"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            refs = [p.get("$ref", "") for p in operation.get("parameters", [])]
            if "{job}" in path:
                assert "#/components/parameters/jobInPath" in refs, (method, path)
            if "{job}" in path or path == "/runs" or (refs and refs[0] == "#/components/parameters/job"):
                assert operation["responses"]["404"] == {"$ref": "#/components/responses/UnknownJob"}, (method, path)
    for name in ("Status", "Job", "Run", "Schedule"):
        assert doc["components"]["schemas"][name]["properties"]["job"]["enum"] == ["foo", "rollup"], name
    job, status = doc["components"]["schemas"]["Job"], doc["components"]["schemas"]["Status"]
    assert set(job["required"]) == set(status["required"]) | {"description", "kind", "timeout", "notify", "retries",
                                                              "retryDelay", "channel"}
    assert "attempt" in doc["components"]["schemas"]["Run"]["required"]

    # Every reference points at something, and every answer says what it carries.
    text = json.dumps(doc)
    for ref in re.findall(r'"\$ref": "#/([^"]+)"', text):
        node: Any = doc
        for part in ref.split("/"):
            node = node[part]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "200" in operation["responses"], (method, path)
            if method in {"post", "put", "delete"}:
                assert operation["security"] == [{"bearerAuth": []}, {}], (method, path)
                assert "401" in operation["responses"], (method, path)


async def _schemathesis(svc: Service, tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, str, float]:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCHEMATHESIS, "--config-file", str(config), "--no-color", "run",
        f"{svc.url}/openapi.json", "--checks", "all", *NOT_DELETIONS, "--workers", "1", "--seed", "20261126",
        "--generation-database", "none", "--request-timeout", "10", *args,
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"schemathesis did not finish within {timeout:.0f} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - started


@pytest.mark.timeout(180)
async def test_schemathesis_finds_nothing_wrong(spawn, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every operation: its examples, the coverage phase (edge cases, every undocumented method, bad
    types, missing and extra fields, a job that is none) and 60 generated cases each, positive and
    negative, all checks; with two jobs, a Python one and an SQL one."""
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON,
                               FOOJOB_JOBS_DIR=_jobs_dir(tmp_path)).started()
    code, out, took = await _schemathesis(svc, tmp_path, "--max-examples", "60")
    assert code == 0, out[-20_000:]
    assert "No issues found" in out, out[-5_000:]
    # Every operation was reached, but GET /openapi.json: schemathesis leaves the document it reads out.
    doc = document([*JOBS, SQL_JOB[0]], DEFAULT_JOB, __version__)
    operations = sum(len(methods) for methods in doc["paths"].values()) - 1
    assert f"Selected: {operations}/{operations}" in out and f"Tested: {operations}\n" in out, out[-5_000:]
    assert "unexpected error serving" not in svc.stderr()


@pytest.mark.timeout(120)
async def test_schemathesis_with_a_token_every_change_without_it_is_401(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path,
                                                                        http: aiohttp.ClientSession) -> None:
    """With CONTROL_API_TOKEN set, the fuzzer (which does not know it) only ever gets documented 401s
    from POST, PUT and DELETE, whatever Authorization it makes up; nothing changes."""
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, CONTROL_API_TOKEN=TOKEN,
                               FOOJOB_JOBS_DIR=_jobs_dir(tmp_path)).started()
    code, out, _ = await _schemathesis(svc, tmp_path, "--max-examples", "15", "--include-method-regex",
                                       "(?i)^(POST|PUT|DELETE)$")
    assert code == 0, out[-20_000:]
    assert re.search(r"\b(\d+) generated, \1 passed\b", out), out[-5_000:]  # (and a warning: only 401s)
    status, answer = await get_json(http, "GET", f"{svc.url}/jobs")
    assert status == 200 and [job["job"] for job in answer["jobs"]] == ["foo", SQL_JOB[0]]
    for st in answer["jobs"]:
        assert st["paused"] is False and st["lastRun"] is None, st
        assert st["schedule"] == NEVER_SOON and st["scheduleSource"] == "config" and st["skipNext"] is None, st
    assert "unexpected error serving" not in svc.stderr()


async def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send bytes as they are (no client library to clean them up); the status, headers and JSON body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _post(path: str, body: bytes, *, content_type: str = "application/json", method: str = "POST",
          extra: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


# What the fuzzer found (each a 500 and a traceback before), and what SPEC.md names.
BAD_BODIES = [
    ("/pause", b'\xfd\x88{"for": "2h"}', "application/json", 400, "not UTF-8"),
    ("/schedule", b"M]uYlV\x13-k\xe9N;MI", "application/json", 400, "not UTF-8"),
    ("/pause", b'{"reason": "a\\u0000b"}', "application/json", 400, "NUL"),
    ("/pause", b'{"reason": "a\\ud800b"}', "application/json", 400, "lone surrogate"),
    ("/schedule", b'{"cron": "0 0 1 1 *\\u0000"}', "application/json", 400, "NUL"),
    ("/schedule", b'{"cron": "0 0 1 1 *", "timezone": "Europe/\\udc00"}', "application/json", 400,
     "lone surrogate"),
    ("/pause", b"[" * 20_000, "application/json", 400, "nested too deeply"),
    ("/pause", b'{"for": ' + b"1" * 5000 + b"}", "application/json", 400, "number too long"),
    ("/pause", b'{"for": "2h"}', "application/json; charset=bogus", 415, "UTF-8"),
    ("/pause", '{"for": "2h"}'.encode("utf-16"), "application/json; charset=utf-16", 415, "UTF-8"),
    ("/pause", '{"for": "2h"}'.encode("utf-16"), "application/json", 400, "not UTF-8"),
    ("/pause", b'{"for": ""}', "application/json", 400, "not a duration"),
    ("/pause", b'{"for": "2h", "\\u0000": 1}', "application/json", 400, "unknown field"),
]


async def test_bad_bytes_get_4xx_json_and_change_nothing(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                         http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    for path, body, content_type, code, words in BAD_BODIES:
        method = "PUT" if path == "/schedule" else "POST"
        status, _, answer = await _raw(svc.url, _post(path, body, content_type=content_type, method=method))
        assert status == code and set(answer) == {"error"} and words in answer["error"], (body[:60], answer)
    # A 405 names what the path takes, in the same JSON shape.
    for method, path, allowed in (("PATCH", "/schedule", "DELETE,GET,HEAD,PUT"), ("GET", "/runNow", "POST"),
                                  ("TRACE", "/status", "GET,HEAD"), ("OPTIONS", "/skip", "DELETE,POST")):
        async with http.request(method, svc.url + path) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == allowed, (method, path)
            assert "Method Not Allowed" in (await resp.json())["error"]
    # Nothing changed; valid requests get what they always got.
    status, st = await get_json(http, "GET", f"{svc.url}/status")
    assert st["paused"] is False and st["schedule"] == NEVER_SOON and st["lastRun"] is None
    assert await get_json(http, "POST", f"{svc.url}/pause", json={"for": None, "reason": None}) == (
        200, {"message": "ok"})
    status, st = await get_json(http, "GET", f"{svc.url}/status")
    assert st["paused"] is True and st["resumeAt"] is None
    assert await get_json(http, "POST", f"{svc.url}/pause", data='{"for": "1h"}',
                          headers={"Content-Type": 'application/json; charset="UTF-8"'}) == (200, {"message": "ok"})
    assert "unexpected error serving" not in svc.stderr()
    assert "Traceback" not in svc.stderr()


async def test_undecodable_bytes_in_authorization_are_401(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                                          http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, CONTROL_API_TOKEN=TOKEN).started()
    for value in (b"Bearer \xff\xfe" + TOKEN.encode(), b"\xc3\x28 " + TOKEN.encode(), b"Bearer \xe2\x82"):
        status, headers, answer = await _raw(svc.url, _post("/pause", b"", extra=b"Authorization: " + value + b"\r\n"))
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), (value, answer)
        assert "bearer token" in answer["error"]
    status, st = await get_json(http, "GET", f"{svc.url}/status")
    assert st["paused"] is False
    assert "unexpected error serving" not in svc.stderr()


async def test_the_service_serves_its_document(spawn, db_url: str,  # type: ignore[no-untyped-def]
                                               http: aiohttp.ClientSession) -> None:
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON).started()
    async with http.get(f"{svc.url}/openapi.json") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == document(JOBS, DEFAULT_JOB, __version__)


async def test_the_document_names_the_services_jobs(spawn, db_url: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   http: aiohttp.ClientSession) -> None:
    """With an SQL job too, and another default job: the document names both; a job that is none
    gets the documented 404 from every path that takes a job (``?job=`` names none either: it is
    not left out; the fuzzer found it answered as if it were)."""
    svc: Service = await spawn(DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON, FOOJOB_JOBS_DIR=_jobs_dir(tmp_path),
                               FOOJOB_DEFAULT_JOB=SQL_JOB[0]).started()
    async with http.get(f"{svc.url}/openapi.json") as resp:
        assert await resp.json() == document([*JOBS, SQL_JOB[0]], SQL_JOB[0], __version__)
    doc = document([*JOBS, SQL_JOB[0]], SQL_JOB[0], __version__)
    for path, operations in doc["paths"].items():
        for method in operations:
            if "{job}" in path:
                urls = {"nope": svc.url + path.replace("{job}", "nope")}
            elif "404" in operations[method]["responses"]:
                urls = {name: f"{svc.url}{path}?job={name}" for name in ("nope", "")}
            else:
                continue
            body = {"cron": NEVER_SOON} if method == "put" else None  # (no body is a 400 first)
            for name, url in urls.items():
                async with http.request(method, url, json=body) as resp:
                    assert resp.status == 404, (method, url, resp.status)
                    assert await resp.json() == {"error": f"unknown job {name!r}"}, (method, url)
    # The version 1 paths act on FOOJOB_DEFAULT_JOB; an SQL job's run answers its rows.
    assert (await get_json(http, "GET", f"{svc.url}/status"))[1]["job"] == SQL_JOB[0]
    assert await get_json(http, "POST", f"{svc.url}/runNow") == (200, {"rowCount": 1, "rows": [{"one": 1}]})
    status, answer = await get_json(http, "GET", f"{svc.url}/jobs/{SQL_JOB[0]}/runs")
    assert status == 200 and [(r["trigger"], r["attempt"]) for r in answer["runs"]] == [("manual", 1)]
    assert "unexpected error serving" not in svc.stderr()
