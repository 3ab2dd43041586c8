"""What a backlog folds (bot.outbox.fold_plan): a job's successes, in order, never past a message
that is not one — decided on the rows as the outbox holds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.outbox import fold_plan

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _rows(*specs: str) -> list[dict[str, Any]]:
    """One row per spec: S<n> a short run's success post, R<n> a long run's card, E<n> its edit
    into a success, X<n> its edit into a failure, F a failure, A an announcement, P<n> a reply."""
    rows = []
    for i, spec in enumerate(specs, start=1):
        kind, run = spec[0], spec[1:]
        method, row_kind, card = {
            "S": ("post", "success", f"run:{run}"), "R": ("post", "running", f"run:{run}"),
            "E": ("update", "success", f"run:{run}"), "X": ("update", None, f"run:{run}"),
            "F": ("post", None, f"run:{run}"), "A": ("post", None, None), "P": ("reply", None, f"run:{run}"),
        }[kind]
        rows.append({"id": i, "method": method, "kind": row_kind, "card": card,
                     "created_at": T0 + timedelta(seconds=i)})
    return rows


def test_successes_fold_up_to_a_failure_and_never_past_it() -> None:
    plan = fold_plan(_rows("S1", "S2", "S3", "F4", "S5", "S6"), 0)
    assert plan is not None and plan.fold == (2, 3) and plan.runs == 3
    assert fold_plan(_rows("S1", "F2", "S3", "S4"), 0) is None  # nothing before the failure to fold
    assert fold_plan(_rows("S1", "A", "S3"), 0) is None  # nor past an announcement
    assert fold_plan(_rows("F1", "S2", "S3"), 0) is None  # a failure at the head is never folded


def test_a_long_runs_card_folds_with_its_edit_only_when_both_come_before_the_stop() -> None:
    plan = fold_plan(_rows("S1", "R2", "E2", "S3"), 0)
    assert plan is not None and plan.fold == (2, 3, 4) and plan.runs == 3
    # Its edit comes after an announcement: the card stays, to be posted and then edited — and so
    # the fold stops at the card.
    plan = fold_plan(_rows("S1", "S2", "R3", "A", "E3"), 0)
    assert plan is not None and plan.fold == (2,) and plan.runs == 2
    # A card whose run goes on (no edit yet), or whose run failed, stops the fold too.
    plan = fold_plan(_rows("S1", "S2", "R3", "S4"), 0)
    assert plan is not None and plan.fold == (2,)
    plan = fold_plan(_rows("S1", "R2", "X2", "S3"), 0)
    assert plan is None


def test_a_long_runs_card_at_the_head_alone_becomes_its_result() -> None:
    plan = fold_plan(_rows("R1", "E1", "F3"), 0)
    assert plan is not None and plan.head_edit == 2 and plan.fold == (2,) and plan.runs == 1
    assert fold_plan(_rows("R1", "A", "E1"), 0) is None  # its edit after the stop: posted as the card it is
    plan = fold_plan(_rows("R1", "E1", "R2", "E2"), 0)
    assert plan is not None and plan.runs == 2 and plan.fold == (2, 3, 4) and plan.head_edit is None


def test_the_replies_of_folded_runs_go_with_them_and_others_stay() -> None:
    plan = fold_plan(_rows("S1", "P1", "S2", "P2", "F3", "P3"), 0)
    assert plan is not None and plan.fold == (3,) and plan.replies == (2, 4)
    # A head that folds alone keeps its thread (it is posted, its replies go under it).
    plan = fold_plan(_rows("R1", "E1", "P1"), 0)
    assert plan is not None and plan.replies == ()


def test_earlier_attempts_folds_count() -> None:
    plan = fold_plan(_rows("S1", "S2"), 5)
    assert plan is not None and plan.runs == 7
