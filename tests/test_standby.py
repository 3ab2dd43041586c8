"""Who owns a fire, and which fires a replica stands by for (bot/scheduler.py: owner, others_fires),
computed the same on every replica from the same jobs and the same count of replicas up."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.scheduler import Scheduler, owner
from bot.schedules import Schedule, parse_cron

UTC_ZONE = ZoneInfo("UTC")


def schedules(crons: dict[str, str]) -> dict[str, Schedule]:
    return {job: Schedule(job, parse_cron(cron), UTC_ZONE, "config", None, None, 0) for job, cron in crons.items()}


async def nothing(*_: object) -> None:
    return None


def test_jobs_are_dealt_round_the_replicas_evenly() -> None:
    for replicas, jobs in ((3, 50), (5, 200), (2, 3)):
        counts = Counter(owner(position, replicas) for position in range(jobs))
        assert max(counts.values()) - min(counts.values()) <= 1
        assert set(counts) == set(range(replicas))
    assert owner(7, 1) == 0  # alone: every fire is this replica's


async def test_a_replica_stands_by_for_every_fire_of_the_others_jobs_and_none_of_its_own() -> None:
    jobs = {"a": "* * * * * *", "b": "*/2 * * * * *", "c": "* * * * * *", "d": "0 0 1 1 *"}
    views = []
    for rank in range(3):
        scheduler = Scheduler(schedules(jobs), UTC_ZONE, on_fire=nothing, on_pause_expired=nothing)
        scheduler.start()
        try:
            assert scheduler.others_fires(datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=10), 100) is None
            scheduler.spread(rank, 3)
            start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
            drawn = scheduler.others_fires(start, start + timedelta(seconds=10), 1000)
            assert drawn is not None
            fires, end = drawn
            views.append({(job, at) for job, at, _ in fires})
            assert end == start + timedelta(seconds=10)
            assert [at for _, at, _ in fires] == sorted(at for _, at, _ in fires)
            # Cut short: whole instants only, and where it stops is said.
            few, cut = scheduler.others_fires(start, start + timedelta(seconds=10), 3) or ([], start)
            assert cut < start + timedelta(seconds=10) and all(at <= cut for _, at, _ in few)
            assert {(j, a) for j, a, _ in fires if a <= cut} == {(j, a) for j, a, _ in few}
        finally:
            await scheduler.stop(1)
    # Jobs by name a, b, c, d: replica 0 owns a and d, 1 owns b, 2 owns c. Each fire is watched by
    # every replica but its owner's.
    every = {("a", start + timedelta(seconds=s)) for s in range(1, 11)} | \
            {("c", start + timedelta(seconds=s)) for s in range(1, 11)} | \
            {("b", start + timedelta(seconds=s)) for s in range(2, 11, 2)}
    owners = {"a": 0, "b": 1, "c": 2}
    for rank, view in enumerate(views):
        assert view == {(job, at) for job, at in every if owners[job] != rank}
