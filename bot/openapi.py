"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

Built here as a dict (no data file to ship). It says what :mod:`bot.http` answers, status by status;
``tests/test_openapi.py`` checks that every route is documented and runs a property-based fuzzer
(schemathesis) against a real service with it: no 5xx, every answer as documented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.schedules import MAX_NEXT

MAX_RUNS = 100  # bot.control.MAX_HISTORY (not imported: this room stays below the core)
MAX_REASON = 500


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


TIME = {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
STRING_OR_NULL = {"type": ["string", "null"]}
# What a mutating verb records as its actor: a Slack user ID, "http", "cli" (and "deploy" for a schedule).
ACTOR = {"type": ["string", "null"], "description": 'Slack user ID ("U…"), "http", "cli"; null for the scheduler'}
# Strings the service stores: PostgreSQL text holds neither NUL nor lone surrogates (refused with 400).
NO_NUL = "^[^\\u0000]*$"


def _schemas(jobs: list[str]) -> dict[str, Any]:
    job_name = {"type": "string", "enum": jobs}
    run = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "job", "trigger", "scheduledFor", "startedAt", "finishedAt", "status", "result",
                     "error", "triggeredBy"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "job": job_name,
            "trigger": {"type": "string", "enum": ["schedule", "manual", "catch-up"],
                        "description": '"manual": HTTP, CLI, Slack or a button'},
            "scheduledFor": {**TIME_OR_NULL, "description": "the fire instant; null for a manual run"},
            "startedAt": TIME,
            "finishedAt": {**TIME_OR_NULL, "description": "null while running"},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "result": _nullable(_ref("schemas", "JobResult")),
            "error": {**STRING_OR_NULL, "description": "why the run failed (e.g. \"timed out after 10m\")"},
            "triggeredBy": ACTOR,
        },
    }
    return {
        "Error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error"],
            "properties": {"error": {"type": "string", "minLength": 1, "description": "what is wrong, in words"}},
            "example": {"error": "unknown job 'bar'"},
        },
        "Message": {
            "type": "object",
            "additionalProperties": False,
            "required": ["message"],
            "properties": {"message": {"type": "string", "const": "ok"}},
        },
        "IsRunning": {
            "type": "object",
            "additionalProperties": False,
            "required": ["message"],
            "properties": {"message": {"type": "string", "enum": ["true", "false"],
                                       "description": '"true" while the schedule is active, "false" while paused'}},
        },
        "JobResult": {
            "type": "object",
            "description": "What the job returns: for foo, its row",
            "required": ["id", "colTimestamp"],
            "properties": {"id": {"type": "integer"}, "colTimestamp": TIME},
            "example": {"id": 1, "colTimestamp": "2026-11-26T21:58:06.331663+00:00"},
        },
        "Run": run,
        "Runs": {
            "type": "object",
            "additionalProperties": False,
            "required": ["runs"],
            "properties": {"runs": {"type": "array", "maxItems": MAX_RUNS, "items": _ref("schemas", "Run"),
                                    "description": "newest first"}},
        },
        "Status": {
            "type": "object",
            "additionalProperties": False,
            "required": ["job", "paused", "pausedBy", "pausedAt", "pauseReason", "resumeAt", "schedule",
                         "scheduleDescription", "timezone", "nextRunAt", "running", "lastRun", "scheduleSource",
                         "skipNext"],
            "properties": {
                "job": job_name,
                "paused": {"type": "boolean"},
                "pausedBy": ACTOR,
                "pausedAt": TIME_OR_NULL,
                "pauseReason": STRING_OR_NULL,
                "resumeAt": {**TIME_OR_NULL, "description": "when a timed pause ends; null: until resumed"},
                "schedule": {"type": "string", "description": "the effective crontab expression"},
                "scheduleDescription": {"type": "string", "description": "the schedule in words"},
                "timezone": {"type": "string", "description": "IANA zone the schedule is read in"},
                "nextRunAt": {**TIME_OR_NULL,
                              "description": "the first fire that will run (after a skip, the one after it); "
                                             "null while paused"},
                "running": {"type": "boolean", "description": "a run is in progress (on any replica)"},
                "lastRun": _nullable(_ref("schemas", "Run")),
                "scheduleSource": {"type": "string", "enum": ["config", "runtime"]},
                "skipNext": {**TIME_OR_NULL, "description": "the fire that will be skipped, until it has passed"},
            },
        },
        "Schedule": {
            "type": "object",
            "additionalProperties": False,
            "required": ["job", "cron", "timezone", "description", "source", "setBy", "setAt", "next"],
            "properties": {
                "job": job_name,
                "cron": {"type": "string"},
                "timezone": {"type": "string"},
                "description": {"type": "string", "description": "the expression in words"},
                "source": {"type": "string", "enum": ["config", "runtime"],
                           "description": '"config": FOOJOB_CRON/FOOJOB_TIMEZONE; "runtime": set through a surface'},
                "setBy": {"type": ["string", "null"],
                          "description": 'as pausedBy, or "deploy"; null for the configured schedule'},
                "setAt": TIME_OR_NULL,
                "next": {"type": "array", "items": TIME, "minItems": 1, "maxItems": MAX_NEXT,
                         "description": "the next fires in the schedule's zone, whatever the pause state, "
                                        "without a skipped one"},
            },
        },
        "ScheduleRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cron"],
            "properties": {
                "cron": {"type": "string", "minLength": 1, "pattern": NO_NUL,
                         "description": "5 fields, or 6 with seconds first; it must fire at least once",
                         "example": "*/10 * * * *"},
                "timezone": {"type": ["string", "null"], "minLength": 1, "pattern": NO_NUL,
                             "description": "IANA zone; left out or null: the current one", "example": "Europe/London"},
            },
        },
        "PauseRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "for": {"type": ["string", "null"], "minLength": 1, "pattern": NO_NUL,
                        "description": "how long: 30m, 2h, 1d, 1h30m (at most 366d); left out or null: "
                                       "until resumed",
                        "example": "2h"},
                "reason": {"type": ["string", "null"], "maxLength": MAX_REASON, "pattern": NO_NUL,
                           "example": "deploy"},
            },
        },
        "Skipped": {
            "type": "object",
            "additionalProperties": False,
            "required": ["skipped"],
            "properties": {"skipped": {**TIME, "description": "the fire that will not run"}},
        },
        "Unskipped": {
            "type": "object",
            "additionalProperties": False,
            "required": ["skipped"],
            "properties": {"skipped": {"type": "null"}},
        },
        "Health": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "database", "slack"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unhealthy"]},
                "database": {"type": "string", "enum": ["ok", "unreachable", "starting"]},
                "slack": {"type": "string", "enum": ["connected", "disconnected", "off"]},
            },
        },
    }


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return _json(_ref("schemas", "Error"), description, **extra)


RESPONSES: dict[str, Any] = {
    "BadRequest": _error("Bad input: a malformed body (not UTF-8, not JSON, not an object, nested too deeply, "
                         "NUL or lone surrogates in a string), an unknown or mistyped field, or a bad value; "
                         "nothing changed"),
    "Unauthorized": _error(
        "With CONTROL_API_TOKEN set: a missing or wrong bearer token. Without it: a caller that is not on "
        "this machine (loopback)",
        headers={"WWW-Authenticate": {"description": "Bearer realm=\"foojob\" (when a token is configured)",
                                      "required": False, "schema": {"type": "string"}}}),
    "CrossSite": _error(
        "Without CONTROL_API_TOKEN: the request names another host (Host is not localhost, an IP address "
        "or the bound name: DNS rebinding) or comes from a page of another site (Origin): no web page may "
        "act on the job"),
    "UnknownJob": _error("Unknown job"),
    "TooLarge": _error("The body is over 64 KiB"),
    "UnsupportedCharset": _error("The body declares a charset other than UTF-8"),
    "Unavailable": _error("The database is unreachable, or not ready yet while the service starts"),
    "MethodNotAllowed": _error("The path does not take this method (any path, any method not documented here)",
                               headers={"Allow": {"description": "the methods the path takes", "required": True,
                                                  "schema": {"type": "string"}}}),
}

JOB_PARAM = {"name": "job", "in": "query", "required": False, "schema": {"type": "string", "default": "foo"},
             "description": "which job (404 if unknown)"}


def _operation(summary: str, ok: dict[str, Any], *, errors: Iterable[str] = (), job: bool = True,
               params: Iterable[dict[str, Any]] = (), body: dict[str, Any] | None = None,
               protected: bool = False, extra: dict[str, Any] | None = None,
               description: str | None = None) -> dict[str, Any]:
    codes = {"400": "BadRequest", "401": "Unauthorized", "403": "CrossSite", "404": "UnknownJob", "413": "TooLarge",
             "415": "UnsupportedCharset", "503": "Unavailable"}
    responses: dict[str, Any] = {"200": ok}
    for code in sorted({*errors, *(["401", "403"] if protected else []), *(["404"] if job else []), "503"}):
        responses[code] = _ref("responses", codes[code])
    responses.update(extra or {})
    operation: dict[str, Any] = {"summary": summary, "responses": dict(sorted(responses.items()))}
    if description:
        operation["description"] = description
    parameters = [_ref("parameters", "job")] if job else []
    operation["parameters"] = [*parameters, *params]
    if not operation["parameters"]:
        del operation["parameters"]
    if body is not None:
        operation["requestBody"] = body
    if protected:
        # The bearer token when CONTROL_API_TOKEN is set; without it, nothing (loopback callers only).
        operation["security"] = [{"bearerAuth": []}, {}]
    return operation


def document(jobs: Iterable[str], version: str) -> dict[str, Any]:
    """The OpenAPI document for a service that runs ``jobs``."""
    names = sorted(jobs)
    ok_message = _json(_ref("schemas", "Message"), "Done (idempotent)")
    schedule_ok = _json(_ref("schemas", "Schedule"), "The effective schedule")
    conflict = {"409": _error("A run of the job is in progress (here or on another replica)")}
    job_param = {**JOB_PARAM, "schema": {"type": "string", "enum": names, "default": "foo"}}
    body_errors = ("400", "413", "415")
    paths: dict[str, Any] = {
        "/runNow": {"post": _operation(
            "Run the job now, paused or not", _json(_ref("schemas", "JobResult"), "The run succeeded: its result"),
            protected=True,
            extra={**conflict, "500": _error("The job failed (the run is recorded as failed)")})},
        "/pause": {"post": _operation(
            "Pause the schedule (idempotent)", ok_message, protected=True, errors=body_errors,
            body={"required": False, "description": "optional; an empty body pauses until resumed",
                  "content": {"application/json": {"schema": _ref("schemas", "PauseRequest")}}})},
        "/resume": {"post": _operation("Resume the schedule (idempotent)", ok_message, protected=True)},
        "/isRunning": {"get": _operation("Whether the schedule is active",
                                         _json(_ref("schemas", "IsRunning"), "Active or paused"))},
        "/status": {"get": _operation("Pause state, schedule, next and last run",
                                      _json(_ref("schemas", "Status"), "The job's status"))},
        "/runs": {"get": _operation(
            "The last runs, newest first", _json(_ref("schemas", "Runs"), "The runs"), job=False, errors=["400"],
            params=[{**JOB_PARAM, "schema": {"type": "string", "enum": names},
                     "description": "only this job's runs (404 if unknown); left out: every job's"},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RUNS, "default": 20}}],
            extra={"404": _ref("responses", "UnknownJob")})},
        "/schedule": {
            "get": _operation("The effective schedule and its next fires", schedule_ok, errors=["400"],
                              params=[{"name": "next", "in": "query", "required": False,
                                       "description": "how many fire instants to list",
                                       "schema": {"type": "integer", "minimum": 1, "maximum": MAX_NEXT,
                                                  "default": 5}}]),
            "put": _operation(
                "Set the schedule of every replica (within a second)", schedule_ok, protected=True,
                errors=body_errors,
                description="400 names the problem (a bad expression, an unknown zone, one that never fires); "
                            "then nothing changes. The same schedule again changes nothing.",
                body={"required": True,
                      "content": {"application/json": {"schema": _ref("schemas", "ScheduleRequest")}}}),
            "delete": _operation("Back to the configured schedule (FOOJOB_CRON, FOOJOB_TIMEZONE)", schedule_ok,
                                 protected=True),
        },
        "/skip": {
            "post": _operation("Skip the next fire (only that one); again: the same instant",
                               _json(_ref("schemas", "Skipped"), "The fire that will not run"), protected=True,
                               extra={"409": _error("The job is paused: no fire is coming to skip")}),
            "delete": _operation("Clear the skip", _json(_ref("schemas", "Unskipped"), "No fire is skipped"),
                                 protected=True),
        },
        "/healthz": {"get": _operation(
            "Liveness for load balancers", _json(_ref("schemas", "Health"), "Healthy"), job=False,
            extra={"503": _json(_ref("schemas", "Health"), "The database is unreachable (or starting), or the "
                                                             "Slack socket has been down for over a minute")})},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "foojob",
            "version": version,
            "description": (
                "Controls a cron job: run it now, pause and resume its schedule, change the schedule, skip a "
                "fire; read its status and runs. JSON bodies, camelCase keys, times in RFC 3339 with an offset.\n\n"
                "Every error is `{\"error\": \"…\"}`, never a stack trace. A method a path does not take gets "
                "405 with `Allow`; an unknown path 404.\n\n"
                "POST, PUT and DELETE need `Authorization: Bearer <CONTROL_API_TOKEN>` when that variable is "
                "set; without it they are accepted from loopback callers only (401 otherwise), and never "
                "from a web page: a `Host` that is not this machine or an `Origin` of another site gets 403."),
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(names),
            "responses": RESPONSES,
            "parameters": {"job": job_param},
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "CONTROL_API_TOKEN. When it is not set, no token is needed (nor checked) and "
                               "only loopback callers may use POST, PUT and DELETE"}},
        },
    }
