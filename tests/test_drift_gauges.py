"""Drift and online series in prometheus-client's multiprocess mode: the most recent value wins, promtool-clean."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.prometheus_text import PROMTOOL, promtool_check, sample_value, total

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from monitors.drift_gauges import DriftSnapshot, count_check, count_feedback, publish_drift, publish_online
    from monitors.online_accuracy import OnlineScores
    from monitors.exposition import render_latest
    old = DriftSnapshot("m", 100.0, 0.25, False, [("text", "abs_text_content_drift", 0.6), ("label", "chisquare", 0.2)])
    new = DriftSnapshot("m", 200.0, 0.5, True, [("text", "abs_text_content_drift", 0.9)])
    if sys.argv[1] == "old":
        publish_drift(old)
    else:
        publish_drift(new)
        publish_drift(old)  # an older check arriving late changes nothing
        publish_online("m", OnlineScores(10, 0.7, 0.6))
        count_check("failed", 1.5)
        count_feedback("m", 10)
        sys.stdout.buffer.write(render_latest())
    """
)


def test_multiprocess_mode_shows_the_most_recent_values(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    for which in ("old", "new"):  # two worker processes, the second publishing later
        done = subprocess.run([sys.executable, "-c", SCRIPT, which], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    text = done.stdout
    assert sample_value(text, "heldout_drift_share", {"model": "m"}) == 0.5
    assert sample_value(text, "heldout_drift_detected", {"model": "m"}) == 1.0
    assert sample_value(text, "heldout_drift_check_timestamp_seconds", {"model": "m"}) == 200.0
    labels = {"model": "m", "column": "text", "method": "abs_text_content_drift"}
    assert sample_value(text, "heldout_drift_score", labels) == 0.9
    assert sample_value(text, "heldout_online_accuracy", {"model": "m"}) == 0.7
    assert total(text, "heldout_drift_checks_total", {"status": "failed"}) == 1.0
    assert total(text, "heldout_feedback_total", {"model": "m"}) == 10.0
    if PROMTOOL:
        result = promtool_check(text)
        assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr
