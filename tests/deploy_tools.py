"""Shared by the deploy checks: rendering the chart with Helm's own library, the tools they call, and the
Prometheus series catalog that the dashboard and the alerts may use."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "heldout"
GPU_POSTGRES_VALUES = CHART / "ci" / "gpu-postgres-values.yaml"
DASHBOARD = ROOT / "dashboards" / "heldout.json"
CHART_DASHBOARD = CHART / "dashboards" / "heldout.json"
DEPLOY_DATA = ROOT / "tests" / "deploy"
RELEASE = "heldout"
NAMESPACE = "ml"

# DESIGN.md's Prometheus catalog: series name -> its labels. Histograms add _bucket (with le), _sum and _count.
CATALOG: dict[str, frozenset[str]] = {
    name: frozenset(labels.split()) if labels else frozenset()
    for name, labels in {
        "heldout_http_requests_total": "method route status",
        "heldout_http_request_duration_seconds": "method route",
        "heldout_inference_request_duration_seconds": "model",
        "heldout_inference_queue_duration_seconds": "model",
        "heldout_inference_batch_duration_seconds": "model",
        "heldout_inference_batch_size": "model",
        "heldout_inference_queue_depth": "model",
        "heldout_predictions_total": "model label",
        "heldout_generated_tokens_total": "model",
        "heldout_time_to_first_token_seconds": "model",
        "heldout_time_per_output_token_seconds": "model",
        "heldout_prompt_tokens_total": "model",
        "heldout_generation_finished_total": "model reason",
        "heldout_inference_rejected_total": "model reason",
        "heldout_model_info": "model version task device dtype",
        "heldout_evaluation_score": "model model_version test_set metric",
        "heldout_evaluation_score_lower": "model model_version test_set metric",
        "heldout_evaluation_score_upper": "model model_version test_set metric",
        "heldout_evaluations_total": "status",
        "heldout_evaluation_duration_seconds": "",
        "heldout_scoring_submissions_total": "test_set outcome",
        "heldout_human_rating": "model model_version test_set",
        "heldout_online_accuracy": "model",
        "heldout_online_f1": "model",
        "heldout_estimated_accuracy": "model",
        "heldout_estimated_f1": "model",
        "heldout_generalization_gap": "model model_version test_set metric",
        "heldout_feedback_total": "model",
        "heldout_drift_share": "model",
        "heldout_drift_detected": "model",
        "heldout_drift_score": "model column method",
        "heldout_drift_check_timestamp_seconds": "model",
        "heldout_drift_check_duration_seconds": "",
        "heldout_drift_checks_total": "status",
        "heldout_explanations_total": "model method",
        "heldout_explanation_duration_seconds": "model method",
    }.items()
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus attaches to every scraped series (ServiceMonitor targets), usable in the alerts.
TARGET_LABELS = frozenset({"namespace", "job", "instance", "pod", "service", "container", "endpoint"})

# Values for Grafana's built-in variables when a dashboard query is run outside Grafana.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}

SERIES_NAME = re.compile(r"\b(heldout_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(heldout_[a-z0-9_]+)\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
# label_replace(v, "dst", "replacement", "src", "regex") adds the label dst.
LABEL_REPLACE_DST = re.compile(r'"([a-zA-Z_][a-zA-Z0-9_]*)",\s*"[^"]*",\s*"[^"]*",\s*"[^"]*"\s*\)')


def tool(name: str) -> str:
    """The path of a command-line tool, or a skip naming the package that provides it.

    Console scripts of the dev extras sit beside this interpreter, which need not be on PATH (a virtualenv
    used without activating it)."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        package = {"promtool": "apt-get install prometheus", "prometheus": "apt-get install prometheus"}.get(
            name, f"pip install -e '.[dev]' ({name})"
        )
        pytest.skip(f"{name} is not installed: {package}")
    return path


def run(command: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def load_yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered manifest, as `helm template heldout helm/heldout -n ml` renders them."""
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {path: text for path, text in sorted(rendered.items()) if path.endswith(".yaml") and text.strip()}


def as_stream(manifests: dict[str, str]) -> str:
    """One YAML stream, laid out like `helm template` output."""
    return "".join(f"---\n# Source: {path}\n{text.strip()}\n" for path, text in manifests.items())


def objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects(manifests):
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def rule_groups(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """The PrometheusRule's groups, i.e. what the Operator hands to Prometheus as a rule file."""
    (rule,) = by_kind(manifests)["PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


class Query(NamedTuple):
    panel: str
    ref: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.panel}/{self.ref}"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    """The query Grafana sends with every template variable at its "All" value."""
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            name = re.escape(variable["name"])
            expr = re.sub(rf"\$(?:\{{{name}\}}|{name}\b)", variable["allValue"], expr)
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(name, value)
    assert "$" not in expr.replace('"$1"', ""), f"unsubstituted variable in {expr}"
    return expr


def catalog_series(name: str) -> str | None:
    """The catalog series a sample name belongs to (histogram samples map to their histogram)."""
    if name in CATALOG:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in CATALOG:
            return name.removesuffix(suffix)
    return None


def series_in(expr: str) -> set[str]:
    return set(SERIES_NAME.findall(expr))


def unknown_labels(expr: str, extra: frozenset[str] = frozenset()) -> set[str]:
    """Labels matched or grouped on in expr that none of its series carry."""
    known = set(extra) | {"le"} | set(LABEL_REPLACE_DST.findall(expr))
    for name in series_in(expr):
        base = catalog_series(name)
        known |= CATALOG[base] if base else set()
    used = {label for _, matchers in SELECTOR.findall(expr) for label in MATCHER_LABEL.findall(matchers)}
    used |= {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    return used - known


def check_promql(exprs: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on recording rules made of exprs: Prometheus's own parser checks each one."""
    rules = [{"record": f"check:query_{i}:expr", "expr": expr} for i, expr in enumerate(exprs)]
    path = directory / "queries.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}, sort_keys=False))
    return run([tool("promtool"), "check", "rules", str(path)])
