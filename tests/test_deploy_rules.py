"""The chart's alert rules, as rendered: promtool accepts them, and every alert has a promtool unit test
that makes it fire (and one where it must stay quiet)."""

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_tools import (
    DEPLOY_DATA,
    GPU_POSTGRES_VALUES,
    TARGET_LABELS,
    catalog_series,
    load_yaml,
    render,
    rule_groups,
    run,
    series_in,
    tool,
    unknown_labels,
)

UNIT_TESTS = DEPLOY_DATA / "alerts.test.yaml"
# Written next to the copy of UNIT_TESTS, which names it in rule_files.
RULES_FILE = "heldout-rules.yaml"


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    return rule_groups(render(load_yaml(GPU_POSTGRES_VALUES)))


@pytest.fixture(scope="module")
def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture
def rule_dir(groups: list[dict[str, Any]], tmp_path: Path) -> Path:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return tmp_path


def test_the_issue_asks_for_these_alerts(alerts: list[dict[str, Any]]) -> None:
    assert {rule["alert"] for rule in alerts} == {
        "HeldoutDriftDetected",
        "HeldoutOnlineAccuracyLow",
        "HeldoutEstimatedAccuracyDrop",
        "HeldoutEvaluationRegression",
        "HeldoutLatencyP99High",
        "HeldoutHighErrorRatio",
        "HeldoutReadinessFlapping",
    }


def test_alerts_follow_conventions(alerts: list[dict[str, Any]]) -> None:
    for rule in alerts:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rules_use_catalog_series_and_their_labels(groups: list[dict[str, Any]]) -> None:
    for rule in (rule for group in groups for rule in group["rules"]):
        expr = rule["expr"]
        assert all(catalog_series(name) for name in series_in(expr)), expr
        unknown = unknown_labels(expr, TARGET_LABELS | {"condition"})
        assert not unknown, f"{unknown} in {expr}"


def test_promtool_check_rules(rule_dir: Path) -> None:
    result = run([tool("promtool"), "check", "rules", str(rule_dir / RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not(alerts: list[dict[str, Any]]) -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for name in (rule["alert"] for rule in alerts):
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never fires in a test"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} is never quiet in a test"


def test_promtool_unit_tests_pass(rule_dir: Path) -> None:
    result = run([tool("promtool"), "test", "rules", str(rule_dir / UNIT_TESTS.name)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
