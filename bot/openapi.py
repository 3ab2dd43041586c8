"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

Built here as a dict (no data file to ship). It says what :mod:`bot.http` answers, status by status;
``tests/test_openapi.py`` checks that every route is documented and runs a property-based fuzzer
(schemathesis) against a real service with it: no 5xx, every answer as documented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from bot.durations import PAUSE_PATTERN
from bot.schedules import MAX_NEXT, iana_names

MAX_RUNS = 100  # bot.control.MAX_HISTORY (not imported: this room stays below the core)
MAX_REASON = 500
MAX_RETRIES = 10  # bot.catalogue.MAX_RETRIES
MAX_ROWS = 20  # an SQL job's result holds its first 20 rows (bot.sqljob)


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
                     "error", "triggeredBy", "attempt"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "job": job_name,
            "trigger": {"type": "string", "enum": ["schedule", "manual", "catch-up", "retry"],
                        "description": '"manual": HTTP, CLI, Slack or a button; "retry": a failed fire tried again'},
            "scheduledFor": {**TIME_OR_NULL, "description": "the fire instant (a retry's too); null for a manual run"},
            "startedAt": TIME,
            "finishedAt": {**TIME_OR_NULL, "description": "null while running"},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "result": _nullable(_ref("schemas", "JobResult")),
            "error": {**STRING_OR_NULL, "description": "why the run failed (e.g. \"timed out after 10m\")"},
            "triggeredBy": ACTOR,
            "attempt": {"type": "integer", "minimum": 1,
                        "description": "1 for a fire's first try, then 2, 3… for its retries"},
        },
    }
    status_fields = {
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
    }
    seconds = {"type": "integer", "minimum": 0}
    job_fields = {
        "description": {"type": "string", "description": "what the job does, in words (may be empty)"},
        "kind": {"type": "string", "enum": ["python", "sql"],
                 "description": '"python": a module of jobs/; "sql": a file of FOOJOB_JOBS_DIR'},
        "timeout": {**seconds, "description": "a run is stopped (and failed) after this many seconds"},
        "notify": {"type": "string", "enum": ["all", "failures", "changes"], "description": "which runs are posted"},
        "retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES,
                    "description": "how often a failed scheduled run is tried again"},
        "retryDelay": {**seconds, "description": "seconds before the first retry (doubling each attempt)"},
        "channel": {**STRING_OR_NULL,
                    "description": "the Slack channel of its messages; null: SLACK_CHANNEL or the webhook"},
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
            "description": "What the job returns: foo its row; an SQL job its first rows (column → value) when "
                           f"its last statement returns rows (at most {MAX_ROWS}), else its command tag; "
                           "another Python job, its own object",
            "examples": [{"id": 1, "colTimestamp": "2026-11-26T21:58:06.331663+00:00"},
                         {"rowCount": 1, "rows": [{"one": 1}]}, {"command": "DELETE 42"}],
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
            "required": list(status_fields),
            "properties": status_fields,
        },
        "Job": {
            "type": "object",
            "description": "The job's status (as GET /status) and its own settings",
            "additionalProperties": False,
            "required": [*status_fields, *job_fields],
            "properties": {**status_fields, **job_fields},
        },
        "Jobs": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs"],
            "properties": {"jobs": {"type": "array", "items": _ref("schemas", "Job"), "description": "by name"}},
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
                "timezone": {"type": ["string", "null"], "enum": [*sorted(iana_names()), None],
                             "description": "IANA zone; left out or null: the current one", "example": "Europe/London"},
            },
        },
        "PauseRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "for": {"type": ["string", "null"], "pattern": PAUSE_PATTERN,
                        "description": "how long: 30m, 2h, 1d, 1h30m — parts d, h, m, s in that order, at most "
                                       "999d, 9999h, 999999m, 99999999s each, not all zero; left out or null: "
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
                "slackChannel": {"type": "string", "description": 'with SLACK_CHANNEL (or a job\'s channel): "ok", '
                                 'or the last hour\'s refusal of a channel, as "not_in_channel (C0123ABCD)"'},
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
    "UnknownJob": _error("No job has that name (the error names it)"),
    "TooLarge": _error("The body is over 64 KiB"),
    "UnsupportedCharset": _error("The body declares a charset other than UTF-8"),
    "Unavailable": _error("The database is unreachable, or not ready yet while the service starts"),
    "MethodNotAllowed": _error("The path does not take this method (any path, any method not documented here)",
                               headers={"Allow": {"description": "the methods the path takes", "required": True,
                                                  "schema": {"type": "string"}}}),
}

JobIn = Literal["query", "path"] | None  # where an operation takes its job: ?job=, /jobs/{job}/…; or none


def _operation(summary: str, ok: dict[str, Any], *, errors: Iterable[str] = (), job: JobIn = "query",
               params: Iterable[dict[str, Any]] = (), body: dict[str, Any] | None = None,
               protected: bool = False, extra: dict[str, Any] | None = None,
               description: str | None = None) -> dict[str, Any]:
    """One operation; ``job``: where it takes its job ("query", "path"; None: it has none)."""
    codes = {"400": "BadRequest", "401": "Unauthorized", "403": "CrossSite", "404": "UnknownJob", "413": "TooLarge",
             "415": "UnsupportedCharset", "503": "Unavailable"}
    responses: dict[str, Any] = {"200": ok}
    for code in sorted({*errors, *(["401", "403"] if protected else []), *(["404"] if job else []), "503"}):
        responses[code] = _ref("responses", codes[code])
    responses.update(extra or {})
    operation: dict[str, Any] = {"summary": summary, "responses": dict(sorted(responses.items()))}
    if description:
        operation["description"] = description
    parameters = [_ref("parameters", {"query": "job", "path": "jobInPath"}[job])] if job else []
    operation["parameters"] = [*parameters, *params]
    if not operation["parameters"]:
        del operation["parameters"]
    if body is not None:
        operation["requestBody"] = body
    if protected:
        # The bearer token when CONTROL_API_TOKEN is set; without it, nothing (loopback callers only).
        operation["security"] = [{"bearerAuth": []}, {}]
    return operation


def _job_paths(job: JobIn) -> dict[str, Any]:
    """The operations on one job, for ``job`` "query" (``/runNow``: FOOJOB_DEFAULT_JOB or ``?job=``)
    or "path" (``/jobs/{job}/runNow``)."""
    ok_message = _json(_ref("schemas", "Message"), "Done (idempotent)")
    schedule_ok = _json(_ref("schemas", "Schedule"), "The effective schedule")
    conflict = {"409": _error("A run of the job is in progress (here or on another replica)")}
    body_errors = ("400", "413", "415")
    return {
        "/runNow": {"post": _operation(
            "Run the job now, paused or not", _json(_ref("schemas", "JobResult"), "The run succeeded: its result"),
            job=job, protected=True,
            extra={**conflict, "500": _error("The job failed (the run is recorded as failed)")})},
        "/pause": {"post": _operation(
            "Pause the schedule (idempotent)", ok_message, job=job, protected=True, errors=body_errors,
            body={"required": False, "description": "optional; an empty body pauses until resumed",
                  "content": {"application/json": {"schema": _ref("schemas", "PauseRequest")}}})},
        "/resume": {"post": _operation("Resume the schedule (idempotent)", ok_message, job=job, protected=True)},
        "/schedule": {
            "get": _operation("The effective schedule and its next fires", schedule_ok, job=job, errors=["400"],
                              params=[_ref("parameters", "next")]),
            "put": _operation(
                "Set the schedule of every replica (within a second)", schedule_ok, job=job, protected=True,
                errors=body_errors,
                description="400 names the problem (a bad expression, an unknown zone, one that never fires); "
                            "then nothing changes. The same schedule again changes nothing.",
                body={"required": True,
                      "content": {"application/json": {"schema": _ref("schemas", "ScheduleRequest")}}}),
            "delete": _operation("Back to the configured schedule (FOOJOB_CRON and FOOJOB_TIMEZONE, or an SQL "
                                 "job's header)", schedule_ok, job=job, protected=True),
        },
        "/skip": {
            "post": _operation("Skip the next fire (only that one); again: the same instant",
                               _json(_ref("schemas", "Skipped"), "The fire that will not run"), job=job,
                               protected=True, extra={"409": _error("The job is paused: no fire is coming to skip")}),
            "delete": _operation("Clear the skip", _json(_ref("schemas", "Unskipped"), "No fire is skipped"),
                                 job=job, protected=True),
        },
    }


def document(jobs: Iterable[str], default_job: str, version: str) -> dict[str, Any]:
    """The OpenAPI document for a service that runs ``jobs`` (``default_job``: FOOJOB_DEFAULT_JOB)."""
    names = sorted(jobs)
    runs_ok = _json(_ref("schemas", "Runs"), "The runs")
    paths: dict[str, Any] = {
        **_job_paths("query"),
        "/isRunning": {"get": _operation("Whether the schedule is active",
                                         _json(_ref("schemas", "IsRunning"), "Active or paused"))},
        "/status": {"get": _operation("Pause state, schedule, next and last run",
                                      _json(_ref("schemas", "Status"), "The job's status"))},
        "/runs": {"get": _operation(
            "The last runs, newest first", runs_ok, job=None, errors=["400"],
            params=[{"name": "job", "in": "query", "required": False, "schema": {"type": "string", "enum": names},
                     "description": "only this job's runs (404 if unknown); left out: every job's"},
                    _ref("parameters", "limit")],
            extra={"404": _ref("responses", "UnknownJob")})},
        "/jobs": {"get": _operation("Every job, sorted by name",
                                    _json(_ref("schemas", "Jobs"), "The jobs"), job=None)},
        "/jobs/{job}": {"get": _operation("The job: its status and its settings",
                                          _json(_ref("schemas", "Job"), "The job"), job="path")},
        **{f"/jobs/{{job}}{path}": operations for path, operations in _job_paths("path").items()},
        "/jobs/{job}/runs": {"get": _operation("The job's last runs, newest first", runs_ok, job="path",
                                               errors=["400"], params=[_ref("parameters", "limit")])},
        "/healthz": {"get": _operation(
            "Liveness for load balancers", _json(_ref("schemas", "Health"), "Healthy"), job=None,
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
    job_name = {"type": "string", "enum": names}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "foojob",
            "version": version,
            "description": (
                "Controls cron jobs: run one now, pause and resume its schedule, change the schedule, skip a "
                "fire; read its status and runs. JSON bodies, camelCase keys, times in RFC 3339 with an offset.\n\n"
                f"`/jobs/{{job}}/…` acts on the job named; the version 1 paths (`/runNow`, `/pause`, `/status`, "
                f"…) on `?job=`, else FOOJOB_DEFAULT_JOB (here `{default_job}`). An unknown job gets 404.\n\n"
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
            "parameters": {
                "job": {"name": "job", "in": "query", "required": False,
                        "schema": {**job_name, "default": default_job},
                        "description": "which job (404 if unknown); left out: FOOJOB_DEFAULT_JOB"},
                "jobInPath": {"name": "job", "in": "path", "required": True, "schema": job_name,
                              "description": "which job (404 if unknown)"},
                "limit": {"name": "limit", "in": "query", "required": False,
                          "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RUNS, "default": 20}},
                "next": {"name": "next", "in": "query", "required": False,
                         "description": "how many fire instants to list",
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_NEXT, "default": 5}},
            },
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "CONTROL_API_TOKEN. When it is not set, no token is needed (nor checked) and "
                               "only loopback callers may use POST, PUT and DELETE"}},
        },
    }
