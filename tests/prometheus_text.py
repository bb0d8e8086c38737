"""Reading /metrics text in tests: one parser, so every assertion on a series means the same thing.

A sample matches when its name is exactly ``name`` (suffix included: ``_count``, ``_sum``, ``_bucket``) and its
labels include every given label (other labels may take any value). Gauges are read with ``sample_value``,
which demands exactly one match, so a missing series fails instead of reading as 0. Counters and histogram
counts are read with ``total``, which sums the matches and reads a missing series as 0: prometheus-client
shows a labelled counter only after its first increment, and the registry outlives each app in a test process.
"""

import math
import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = shutil.which("promtool")


def samples(text: str, name: str, labels: dict[str, str] | None = None) -> list[tuple[dict[str, str], float]]:
    """Every matching sample's labels and value, in exposition order."""
    wanted = (labels or {}).items()
    return [
        (sample.labels, float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted)
    ]


def sample_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The one matching sample's value; AssertionError when none or several match."""
    found = samples(text, name, labels)
    assert len(found) == 1, f"{len(found)} samples of {name} match {labels or {}}: {found}"
    return found[0][1]


def total(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the matching samples' values; 0.0 when none match."""
    return math.fsum(value for _, value in samples(text, name, labels))


def sample_names(text: str) -> frozenset[str]:
    """The name of every sample in the text."""
    return frozenset(sample.name for family in text_string_to_metric_families(text) for sample in family.samples)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """Prometheus' own linter on exposition text; callers skip when PROMTOOL is None."""
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
