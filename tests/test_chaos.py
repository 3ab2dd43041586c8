"""`make chaos`, short: replicas of the real service under faults keep every promise (a fire runs
once, none goes unaccounted, no message is lost) — and the harness sees a broken promise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(400)  # a minute of faults, with start-up and recovery around it


def _chaos(pg_server: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CHAOS_DATABASE_URL": pg_server, **env}
    return subprocess.run([sys.executable, "bench/chaos.py"], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=600)


def test_a_minute_of_chaos_keeps_every_promise(pg_server: str) -> None:
    done = _chaos(pg_server, CHAOS_S="60", CHAOS_REPLICAS="3")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "✓ fires run twice: 0" in out and "✓ fires unaccounted" in out and "✓ messages lost: 0" in out
    assert "✗" not in out and "seed " in out


def test_the_harness_sees_a_broken_promise(pg_server: str) -> None:
    done = _chaos(pg_server, CHAOS_S="8", CHAOS_REPLICAS="2", CHAOS_SABOTAGE="all", CHAOS_SEED="5")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-6000:]
    assert "✗ fires run twice: 1" in out and "✗ fires unaccounted" in out and "✗ messages lost: 1" in out
    assert "chaos FAILED (seed 5; replay with CHAOS_SEED=5)" in out and "timeline of faults:" in out
    kept = re.search(r"the logs are in (\S+)", out)
    assert kept is not None
    shutil.rmtree(kept.group(1), ignore_errors=True)
