"""A foojob replica for ``make bench``'s jobs scenario: ``BENCH_JOBS=N`` registers N-1 synthetic
no-op jobs beside ``foo`` through the job registry (``jobs.JOBS``, the line a second job adds),
each on the schedule ``FOOJOB_CRON`` gives (their own variables are left unset), then runs the
service exactly as ``python -m bot`` does."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.model import Job, JobContext
from jobs import JOBS


async def nothing(ctx: JobContext) -> dict[str, Any]:
    return {}


def main() -> int:
    cron = os.environ.get("FOOJOB_CRON") or "* * * * * *"
    for i in range(1, int(os.environ.get("BENCH_JOBS", "1"))):
        name = f"noop{i:02d}"
        JOBS[name] = Job(name=name, run=nothing, cron_variable=f"BENCH_{name.upper()}_CRON", default_cron=cron)
    from bot.__main__ import main as foojob

    return foojob([])


if __name__ == "__main__":
    sys.exit(main())
