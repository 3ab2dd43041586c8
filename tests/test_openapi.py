"""Bad bytes at the HTTP API of a real service: each gets a 4xx ``{"error"}`` and changes nothing.

These are what a property-based fuzzer (schemathesis) found, each a 500 and a traceback before,
and what SPEC.md ("The front door holds") names; replayed as plain requests so that they stay fixed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.conftest import Service, get_json

NEVER_SOON = "0 0 1 1 *"
TOKEN = "s3cret-token-0123456789"


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
