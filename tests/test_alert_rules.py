"""The example Prometheus rules parse, and every metric they name is one foojob exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from bot.metrics import Metrics

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus-rules.yml"


def exported_names() -> set[str]:
    metrics = Metrics("test")
    for family in (metrics.runs,):
        family.labels("foo", "schedule", "succeeded")
    for family in (metrics.run_timeouts, metrics.missed_fires, metrics.last_success, metrics.consecutive_failures,
                   metrics.paused, metrics.duration, metrics.fire_lag):
        family.labels("foo")
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_rules_parse_and_name_metrics_that_exist() -> None:
    doc = yaml.safe_load(RULES.read_text())
    exported = exported_names()
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {"FoojobNoSuccessIn25h", "FoojobFailureStreak", "FoojobSlackMessagesStuck"} <= {r["alert"] for r in rules}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), rule["alert"]
        named = set(re.findall(r"\bfoojob_[a-z_]+", expr))
        assert named, rule["alert"]
        assert named <= exported, f"{rule['alert']} names {named - exported}, which foojob does not export"
        assert "summary" in rule["annotations"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"])
