"""Block Kit messages stay within Slack's limits whatever goes into them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot import messages as voice
from bot.model import JobState, RunRecord, Status
from bot.slack import blocks
from tests.blockkit import problems

TZ = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def run(i: int, *, error: str | None = None, result: dict[str, object] | None = None) -> RunRecord:
    return RunRecord(id=i, job="foo", trigger="manual", scheduled_for=None, started_at=NOW,
                     finished_at=NOW + timedelta(milliseconds=3), status="failed" if error else "succeeded",
                     result=None if error else (result or {"id": 1}), error=error, triggered_by="U0ALICE")


def test_huge_errors_results_and_reasons_are_truncated_within_limits() -> None:
    huge = "<boom & " * 5000
    failed = voice.run_result_message(run(1, error=huge), TZ)
    ok = voice.run_result_message(run(2, result={"blob": huge}), TZ)
    state = JobState(job="foo", paused=True, paused_by="U0ALICE", paused_at=NOW, pause_reason=huge,
                     resume_at=NOW + timedelta(hours=2))
    status = Status(job="foo", state=state, schedule="1 0 * * *", schedule_text="at 00:01 every day",
                    timezone="UTC", next_run_at=None, running=False, last_run=run(1, error=huge))
    messages = [failed, ok, voice.paused_message(state, TZ), blocks.status_message(status, TZ),
                blocks.history_message("foo", [run(i, error=huge) for i in range(25)], TZ),
                voice.run_unrecorded_message("foo", "schedule", NOW, huge, TZ)]
    for message in messages:
        assert problems(message.blocks, text=message.text) == []
        assert len(message.text) <= voice.FALLBACK_TEXT_MAX
        assert "<boom" not in message.text and "&lt;boom &amp;" in message.text  # escaped
    home = blocks.home_view([status], [run(i, error=huge) for i in range(10)], TZ, notice=failed)
    assert problems(home["blocks"], view=True) == []
    assert problems(blocks.home_unavailable_view(huge)["blocks"], view=True) == []


def _status(job: str, description: str = "") -> Status:
    state = JobState(job=job, paused=False, paused_by=None, paused_at=None, pause_reason=None, resume_at=None)
    return Status(job=job, state=state, schedule="*/5 * * * *", schedule_text="every 5 minutes", timezone="UTC",
                  next_run_at=NOW, running=False, last_run=run(1), description=description)


def test_every_job_has_its_card_whatever_the_number_of_jobs() -> None:
    for count in (1, 3, 12, 20, 31, 60, 150):
        statuses = [_status(f"job{i:03d}", description=f"what job {i} does") for i in range(count)]
        runs = [RunRecord(**{**run(i).__dict__, "job": f"job{i:03d}"}) for i in range(10)]
        home = blocks.home_view(statuses, runs, TZ)
        status = blocks.statuses_message(statuses, TZ)
        for view, kind in ((home["blocks"], True), (status.blocks, False)):
            assert problems(view, view=kind) == [], (count, kind)
            shown = json.dumps(view)
            assert all(f"*job{i:03d}*" in shown for i in range(count)), (count, kind)  # no job left out
        buttons = [e["value"] for b in status.blocks if b["type"] == "actions" for e in b["elements"]]
        if count <= 25:  # a card with its own buttons for each (one section and its buttons at least)
            assert sorted(set(buttons)) == [f"job{i:03d}" for i in range(count)]
        if count <= 12:
            assert "what job 0 does" in json.dumps(status.blocks)
        run_lines = [b for b in home["blocks"] if b["type"] == "context" and "#" in json.dumps(b)]
        assert all("*job0" in json.dumps(line) for line in run_lines)  # each run names its job


def test_history_opens_with_the_last_outcomes_and_their_durations_at_a_glance() -> None:
    runs = [RunRecord(**{**run(i, error="boom" if i % 4 == 0 else None).__dict__,
                         "finished_at": NOW + timedelta(milliseconds=10 * i)}) for i in range(1, 41)]
    runs.reverse()  # newest first, as history gives them
    strip = blocks.outcome_strip(runs)
    squares, spark_line = strip.split("\n")
    assert squares.count(":large_green_square:") + squares.count(":large_red_square:") == 30  # the last 30
    assert squares.count(":large_red_square:") == 8  # runs 12, 16, … 40 of those 30 (11 to 40) failed
    spark = spark_line.split("`")[1]
    assert len(spark) == 30 and spark[0] == "▁" and spark[-1] == "█"  # oldest first: durations grew
    assert "30 runs, 8 failed" in spark_line and "min 110 ms" in spark_line and "max 400 ms" in spark_line
    message = blocks.history_message("foo", runs[:10], TZ, {"foo": strip})
    assert problems(message.blocks, text=message.text) == []
    assert message.blocks[0]["text"]["text"].startswith("*foo* :")
    assert blocks.outcome_strip([]) == "no runs yet"
