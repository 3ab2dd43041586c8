"""foojob installed as a user installs it: a wheel built from this tree, in a fresh venv, run as the
``foojob`` command from a directory that is not the repository.

The wheel is built from a copy of the tree (no stale ``build/`` of an earlier build can slip into
it) and installed with the pinned ``requirements.txt`` and ``--no-deps``, then ``pip check``: so the
pins are exactly what the package needs, and what deploys install is what is tested here. No
embedded extra: that is also how foojob runs where pgserver has no wheel (Python 3.13, ARM).
The venv is built once per session (about 20 s, most of it pip).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import pytest

import bot
from tests.conftest import ROOT, get_json, service_env, wait_until

pytestmark = pytest.mark.timeout(300)  # the first test pays for building the venv

NEVER_SOON = "0 0 1 1 *"
MIGRATIONS = sorted(p.stem for p in (ROOT / "sql" / "migrations").glob("*.sql"))


@dataclass(frozen=True)
class Installed:
    venv: Path
    elsewhere: Path  # a working directory with nothing of the repository in it

    @property
    def foojob(self) -> Path:
        return self.venv / "bin" / "foojob"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *argv: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], cwd=self.elsewhere, env=_env(**env), capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    def start(self, *argv: str | Path, stdout: IO[bytes], stderr: IO[bytes], **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(a) for a in argv], cwd=self.elsewhere, env=_env(**env), stdout=stdout,
                                stderr=stderr, stdin=subprocess.DEVNULL)


def _env(**overrides: str) -> dict[str, str]:
    env = service_env(**overrides)
    for leak in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):  # nothing may point back at the repository
        env.pop(leak, None)
    return env


def _check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    home = tmp_path_factory.mktemp("install")
    source = home / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".data", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "tests", "bench"))
    pip = ["-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    _check(subprocess.run([sys.executable, *pip, "wheel", "--no-deps", "--wheel-dir", str(home / "wheels"),
                           str(source)], capture_output=True, text=True, timeout=240))
    wheel, = (home / "wheels").glob("foojob-*.whl")
    venv = home / "venv"
    _check(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120))
    python = str(venv / "bin" / "python")
    _check(subprocess.run([python, *pip, "install", "--no-deps", "-r", str(ROOT / "requirements.txt"), str(wheel)],
                          capture_output=True, text=True, timeout=240))
    # --no-deps above: every dependency of the wheel must come from the pins, or this fails.
    _check(subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=60))
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(source)  # the installed package must need nothing of the tree it came from
    yield Installed(venv, elsewhere)


def test_the_wheel_installs_a_foojob_command_with_its_sql(installed: Installed) -> None:
    assert _check(installed.run(installed.foojob, "--version")).stdout == f"foojob {bot.__version__}\n"
    assert _check(installed.run(installed.python, "-m", "bot", "--version")).stdout == f"foojob {bot.__version__}\n"
    usage = _check(installed.run(installed.foojob, "--help")).stdout
    assert usage.startswith("usage: foojob ") and "schedule" in usage

    where = _check(installed.run(installed.python, "-c", "import bot.db as d; print(d.__file__); print(d.sql_dir()); "
                                 "print(len(d.Queries()), len(d.migrations()))")).stdout.split("\n")
    site = str(installed.venv)
    assert where[0].startswith(site) and where[1].startswith(site), where  # the installed copy, not the repo's
    assert int(where[2].split()[0]) > 10 and int(where[2].split()[1]) == len(MIGRATIONS)

    # Without pgserver (not installed here) and without DATABASE_URL: exit 2, one line saying what to do.
    for argv in (("status",), ()):
        result = installed.run(installed.foojob, *argv)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "DATABASE_URL" in lines[0] and "pip install 'foojob[embedded]'" in lines[0], lines
        assert result.stdout == ""


def test_installed_foojob_migrates_and_shows_status_from_another_directory(installed: Installed,
                                                                          empty_db_url: str) -> None:
    first = _check(installed.run(installed.foojob, "migrate", DATABASE_URL=empty_db_url))
    assert first.stdout == f"applied {len(MIGRATIONS)} migrations: {', '.join(MIGRATIONS)}\n"
    again = _check(installed.run(installed.foojob, "migrate", DATABASE_URL=empty_db_url))
    assert again.stdout == f"no migrations to apply: the database is up to date ({MIGRATIONS[-1]})\n"

    status = json.loads(_check(installed.run(installed.foojob, "status", "--json", DATABASE_URL=empty_db_url)).stdout)
    assert status["job"] == "foo" and status["paused"] is False and status["lastRun"] is None
    ran = json.loads(_check(installed.run(installed.foojob, "run-now", "--json", DATABASE_URL=empty_db_url)).stdout)
    assert ran["status"] == "succeeded" and ran["result"]["id"] == 1 and ran["triggeredBy"] == "cli"


async def test_installed_service_serves_and_stops_on_sigterm(installed: Installed, db_url: str, tmp_path: Path,
                                                             http: aiohttp.ClientSession) -> None:
    err_path = tmp_path / "stderr.log"
    with err_path.open("wb") as err, (tmp_path / "stdout.log").open("wb") as out:
        proc = installed.start(installed.foojob, stdout=out, stderr=err, DATABASE_URL=db_url, FOOJOB_CRON=NEVER_SOON)
        try:
            def listening() -> str | None:
                if proc.poll() is not None:
                    raise AssertionError(f"foojob exited {proc.returncode}:\n{err_path.read_text()}")
                log = err_path.read_text(errors="replace")
                match = re.search(r"listening on http://[^:]+:(\d+)", log)
                return match.group(1) if match and "scheduled foo" in log else None

            port = await wait_until(listening, timeout=30, message="the installed service to start")
            assert await get_json(http, "GET", f"http://127.0.0.1:{port}/healthz") == (
                200, {"status": "ok", "database": "ok", "slack": "off"})
            status, body = await get_json(http, "POST", f"http://127.0.0.1:{port}/runNow")
            assert status == 200 and body["id"] == 1, body
            proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: proc.poll() is not None, timeout=30, message="foojob to exit after SIGTERM")
            assert proc.returncode == 0, err_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class _Reading(dict[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


# Set by the platform, or meaningless there: the add-on sets DATABASE_URL, the router PORT; HOST's
# default is right; there is no embedded database to keep files for.
NOT_ASKED_ON_HEROKU = {"DATABASE_URL", "PORT", "HOST", "FOOJOB_DATA_DIR"}


def test_app_json_deploys_with_postgres_and_offers_every_setting() -> None:
    from bot.config import Settings

    app = json.loads((ROOT / "app.json").read_text())
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert procfile["release"] in ("python -m bot migrate", "foojob migrate")
    assert set(app["formation"]) <= set(procfile) and app["formation"]["web"]["quantity"] >= 1
    assert [a for a in app["addons"] if a["plan"].startswith("heroku-postgresql:")], app["addons"]

    every = _Reading()
    Settings.from_env(every)
    assert set(app["env"]) == every.asked - NOT_ASKED_ON_HEROKU, "app.json's env and bot/config.py disagree"
    for name, spec in app["env"].items():
        assert len(spec["description"]) > 20 and isinstance(spec["required"], bool), name
    # Through Heroku's router nothing is loopback: without a token every POST would be refused.
    assert app["env"]["CONTROL_API_TOKEN"] == {**app["env"]["CONTROL_API_TOKEN"], "generator": "secret",
                                               "required": True}
    Settings.from_env(_Reading({name: spec["value"] for name, spec in app["env"].items() if "value" in spec}))


def test_the_distributions_carry_what_deploys_need_and_build_without_warnings(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".data", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    built = _check(subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir",
                                   str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300))
    # setuptools warned, on every build, that bot.sql.migrations was not declared as a package.
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    sdist, = (tmp_path / "dist").glob("foojob-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"manifest.yml", "Procfile", "app.json", "deploy/prometheus-rules.yml", "requirements.txt"} <= names
    wheel, = (tmp_path / "dist").glob("foojob-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {f"bot/sql/migrations/{m.name}" for m in (ROOT / "sql" / "migrations").glob("*.sql")} <= set(
            archive.namelist())
