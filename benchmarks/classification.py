"""Classification metrics on 1,000,000 predictions over 10 classes: heldout vs scikit-learn.

Run from the repository root: python -m benchmarks.classification

Every row scores the same inputs in one process; the time is the median of 5 runs (1 run for the
evaluate module when it takes over 2 s). "x sklearn" is sklearn's time on the same input type
divided by the row's time. Targets: point metrics >= 10x faster than sklearn's
precision_recall_fscore_support + confusion_matrix, and point metrics plus a 1,000-resample
bootstrap faster than sklearn's point metrics alone.
"""

import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from metrics.classification import classification_report

N = 1_000_000
CLASSES = 10
RUNS = 5
SLOW_SECONDS = 2.0


def make_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Zipf-like class prior (largest class ~34%), 80% correct, errors drawn from the prior."""
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, CLASSES + 1)
    prior /= prior.sum()
    references = rng.choice(CLASSES, size=N, p=prior)
    noise = rng.choice(CLASSES, size=N, p=prior)
    predictions = np.where(rng.random(N) < 0.8, references, noise)
    return references, predictions


def timed(fn: Callable[[], Any], runs: int = RUNS) -> tuple[float, int]:
    first = _once(fn)
    if first > SLOW_SECONDS:
        return first, 1
    return statistics.median([first] + [_once(fn) for _ in range(runs - 1)]), runs


def _once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sklearn_point(references: Any, predictions: Any) -> None:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    precision_recall_fscore_support(references, predictions, average="macro", zero_division=0)
    confusion_matrix(references, predictions)


def evaluate_f1() -> Callable[[Any, Any], Any]:
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")
    import evaluate

    from metrics.evaluate_modules import module_path

    module = evaluate.load(module_path("heldout_f1"))
    return lambda refs, preds: module.compute(predictions=preds, references=refs, average="macro")


def http_request_seconds(refs: list[int], preds: list[int]) -> float:
    """Median wall time of one POST /v1/metrics/classification (default 1000-resample interval) to a real server."""
    import json
    import socket
    import tempfile
    import threading

    import httpx
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(data_dir=tempfile.mkdtemp(), api_keys="evaluator:bench-key", demo_model=False)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    body = json.dumps({"predictions": preds, "references": refs}).encode()
    headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/json"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

            def post() -> None:
                response = client.post("/v1/metrics/classification", content=body, headers=headers)
                response.raise_for_status()

            return timed(post)[0]
    finally:
        server.should_exit = True
        thread.join()


def main() -> None:
    warnings.simplefilter("ignore")
    refs, preds = make_inputs()
    refs_list, preds_list = refs.tolist(), preds.tolist()
    names = np.array([f"class_{i}" for i in range(CLASSES)])
    refs_str, preds_str = names[refs].tolist(), names[preds].tolist()
    f1_module = evaluate_f1()

    # (row, function, name of the sklearn row it is compared with)
    rows: list[tuple[str, Callable[[], Any], str]] = [
        ("sklearn prfs + confusion_matrix (ndarray)", lambda: sklearn_point(refs, preds), "ndarray"),
        ("sklearn prfs + confusion_matrix (list)", lambda: sklearn_point(refs_list, preds_list), "list"),
        ("sklearn prfs + confusion_matrix (list of str)", lambda: sklearn_point(refs_str, preds_str), "str"),
        ("heldout point (ndarray)", lambda: classification_report(preds, refs), "ndarray"),
        (
            "heldout point + 1000-resample bootstrap (ndarray)",
            lambda: classification_report(preds, refs, n_resamples=1000),
            "ndarray",
        ),
        ("heldout point (list)", lambda: classification_report(preds_list, refs_list), "list"),
        (
            "heldout point + 1000-resample bootstrap (list)",
            lambda: classification_report(preds_list, refs_list, n_resamples=1000),
            "list",
        ),
        ("heldout point (list of str)", lambda: classification_report(preds_str, refs_str), "str"),
        ("evaluate.load(heldout_f1).compute (list)", lambda: f1_module(refs_list, preds_list), "list"),
    ]
    times: dict[str, tuple[float, int]] = {}
    for name, fn, _ in rows:
        times[name] = timed(fn)
    baseline = {kind: times[name][0] for name, _, kind in rows if name.startswith("sklearn")}

    print(f"{N:,} predictions, {CLASSES} classes, average='macro'; median of {RUNS} runs unless noted\n")
    print("| row | median s | x sklearn (same input type) |")
    print("|---|---:|---:|")
    for name, _, kind in rows:
        seconds, runs = times[name]
        note = f" ({runs} run)" if runs == 1 else ""
        print(f"| {name}{note} | {seconds:.4f} | {baseline[kind] / seconds:.1f}x |")

    print()
    for kind in ("ndarray", "list"):
        point = times[f"heldout point ({kind})"][0]
        boot = times[f"heldout point + 1000-resample bootstrap ({kind})"][0]
        speedup = baseline[kind] / point
        verdict = "PASS" if speedup >= 10 else "FAIL"
        print(f"{verdict} ({kind}): point metrics {speedup:.1f}x faster than sklearn (target >= 10x)")
        print(
            f"{'PASS' if boot < baseline[kind] else 'FAIL'} ({kind}): point + bootstrap {boot:.4f} s "
            f"< sklearn point {baseline[kind]:.4f} s"
        )
    http_n = 100_000
    seconds = http_request_seconds(refs_list[:http_n], preds_list[:http_n])
    print(
        f"{'PASS' if seconds < 0.5 else 'FAIL'} (HTTP): POST /v1/metrics/classification with {http_n:,} predictions "
        f"and a 1000-resample interval answers in {seconds:.3f} s (median of {RUNS}; target < 0.5 s)"
    )


if __name__ == "__main__":
    main()
