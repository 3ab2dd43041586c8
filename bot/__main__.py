"""The command line: ``foojob [serve | migrate | jobs | run-now | pause | resume | status | history |
schedule [set CRON | reset] | skip | unskip | next [N]]`` (``python -m bot`` is the same command);
every verb takes ``--job NAME`` (default ``FOOJOB_DEFAULT_JOB``) and ``--json``, options anywhere.

``serve`` (the default) runs the service; ``migrate`` applies migrations and exits (Heroku's
release phase); the verbs act on the database directly, for ``heroku run`` and cron-less ops.

Exit status: 0 done; 1 the job failed or the database is unreachable; 2 bad usage or a bad
environment variable; 3 the job is already running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from bot import __version__, logs
from bot.config import Settings
from bot.errors import AlreadyRunning, BadInput, ConfigError, Conflict, DatabaseUnavailable, FoojobError

EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 1, 2, 3


def _prog() -> str:
    # The usage names the command as it was typed: the console script, or the module.
    return "python -m bot" if os.path.basename(sys.argv[0]) == "__main__.py" else "foojob"


VERBS = (("jobs", "list the jobs: each one's kind, schedule, state and last run"),
         ("run-now", "run the job now and print its result"),
         ("pause", "pause the schedule: pause [DURATION] [REASON…]"),
         ("resume", "resume the schedule"),
         ("status", "show whether the schedule is paused, the next and the last run"),
         ("history", "show the last runs"),
         ("schedule", "show the schedule; `schedule set CRON [--timezone ZONE]`, `schedule reset`"),
         ("skip", "skip the next fire (only that one)"),
         ("unskip", "run the skipped fire after all"),
         ("next", "the next fire times: next [N]"))


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser, and each verb's. A verb's words are read by its own parser with
    ``parse_intermixed_args``, so that options go anywhere (``schedule set --job bar '*/6 * * * *'``):
    argparse cannot do that through subparsers."""
    parser = argparse.ArgumentParser(prog=_prog(), description="foojob: cron jobs run from Slack.")
    parser.add_argument("--version", action="version", version=f"foojob {__version__}")
    # Also before the verb: `foojob --job rollup status`.
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    verbs: dict[str, argparse.ArgumentParser] = {}
    for name, text in VERBS:
        sub.add_parser(name, help=text, add_help=False)
        cmd = verbs[name] = argparse.ArgumentParser(prog=f"{_prog()} {name}", description=text)
        if name != "jobs":
            cmd.add_argument("--job", help="the job (default: FOOJOB_DEFAULT_JOB, foo unless set); or name it "
                                           "right after the verb: `foojob pause rollup 2h`")
        cmd.add_argument("--json", action="store_true", help="print JSON as the HTTP API does")
        if name == "pause":
            cmd.add_argument("words", nargs="*", metavar="[JOB] DURATION/REASON",
                             help="optional duration (30m, 2h, 1d, 1h30m), then an optional reason")
        elif name not in ("schedule", "next", "jobs"):
            cmd.add_argument("words", nargs="*", metavar="JOB", help="the job (as --job)")
        if name == "history":
            cmd.add_argument("-n", "--limit", type=int, default=10, help="how many runs (default 10)")
        if name == "schedule":
            cmd.add_argument("words", nargs="*", metavar="[JOB] set CRON | reset",
                             help="nothing: show it; set CRON (5 fields, or 6 with seconds first; quote it or not); "
                                  "reset: back to the configured schedule (its variable, or its file's header)")
            cmd.add_argument("--timezone", help="with set: the IANA zone to read it in (default: the current one)")
            cmd.add_argument("--next", type=int, default=5, metavar="N", help="how many fire times to show (default 5)")
        if name == "next":
            cmd.add_argument("words", nargs="*", metavar="[JOB] N",
                             help="how many fire times (default 5, at most 50)")
    return parser, verbs


def _verb_at(words: list[str]) -> int | None:
    """Where the verb is: the first word that is neither an option nor the value of ``--job``."""
    skip = False
    for at, word in enumerate(words):
        if skip:
            skip = False
        elif word == "--job":
            skip = True
        elif not word.startswith("-"):
            return at
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `foojob status | head -c 10`: the reader has what it wanted. Quietly, and no second
        # complaint when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    for word in words:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept as surrogates by Python
            sys.stderr.write("foojob: an argument is not valid UTF-8 text\n")
            return EXIT_USAGE
    parser, verbs = _parser()
    at = _verb_at(words)
    command = words[at] if at is not None else None
    if at is not None and command in verbs:
        # The verb's own words (options anywhere), after the options of the command itself.
        before = parser.parse_args(words[:at])  # --version, --help, --job, --json
        args = verbs[command].parse_intermixed_args(words[at + 1:])
        args.command = command
        args.json = args.json or before.json
        if command != "jobs":
            args.job = args.job or before.job
    else:
        args = parser.parse_args(words)
    command = args.command or "serve"
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"foojob: configuration error: {exc}\n")
        return EXIT_USAGE
    if settings.database_url is None:
        from bot.db import require_embedded

        try:
            require_embedded()
        except ConfigError as exc:
            sys.stderr.write(f"foojob: configuration error: {exc}\n")
            return EXIT_USAGE
    logs.configure(settings.log_level if command == "serve" else
                   max(settings.log_level, "WARNING", key=logging.getLevelName), settings.log_format,
                   settings.secrets())
    try:
        return asyncio.run(_run(command, args, settings))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:  # a variable only a service can find wrong: Slack refused a token
        sys.stderr.write(f"foojob: configuration error: {exc}\n")
        return EXIT_USAGE
    except FoojobError as exc:
        # Through the log, so that LOG_FORMAT=json gets a JSON line here too.
        logging.getLogger("bot").critical("foojob: %s", exc)
        return EXIT_FAILED


async def _run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from bot import app  # the service's parts load only once the settings are known to be good

    if command == "serve":
        return await app.serve(settings)
    if command == "migrate":
        return await _migrate(settings)
    # Verbs that only read never change the database, not even its schema.
    words = [w for w in getattr(args, "words", []) if w not in settings.jobs]
    read_only = command in ("jobs", "status", "history", "next") or (command == "schedule" and not words)
    async with app.open_core(settings, service=False, read_only=read_only) as core:
        from bot import cli
        from bot.notify import OutboxNotifier

        try:
            status = await cli.run(command, args, core.control, settings.timezone)
            if isinstance(core.notifier, OutboxNotifier):
                # What the command reported is in the outbox; send it now rather than leave it for
                # the service (which may not be running). Its outcome is not the command's.
                try:
                    await app.make_dispatcher(settings, core).drain(10)
                except FoojobError as exc:
                    logging.getLogger("bot.cli").warning("message left in the outbox: %s", exc)
            return status
        except (AlreadyRunning, Conflict) as exc:  # busy, or not in a state for it (skip while paused)
            sys.stderr.write(f"foojob: {exc}\n")
            return EXIT_BUSY
        except BadInput as exc:
            sys.stderr.write(f"foojob: {exc}\n")
            return EXIT_USAGE
        except DatabaseUnavailable as exc:
            sys.stderr.write(f"foojob: {exc}\n")
            return EXIT_FAILED


async def _migrate(settings: Settings) -> int:
    """Apply the migrations not yet applied and say which (the release phase's log shows it)."""
    from bot import app, db

    async with app.open_database(settings) as dsn:
        known = {m.version: f"{m.version:03d}_{m.name}" for m in db.migrations()}
        applied = await app.migrated(dsn, db.Queries())
    if applied:
        sys.stdout.write(f"applied {len(applied)} migration{'s' if len(applied) > 1 else ''}: "
                         f"{', '.join(known[v] for v in applied)}\n")
    else:
        sys.stdout.write(f"no migrations to apply: the database is up to date ({known[max(known)]})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
