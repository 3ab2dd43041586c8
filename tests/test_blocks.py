"""Block Kit messages stay within Slack's limits whatever goes into them."""

from __future__ import annotations

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
