"""Reducing a finished job: its predictions against the hidden targets → metrics, intervals, extra metrics.

Extra metrics are local ``evaluate`` modules named by path, from the admin's allow-list
(HELDOUT_EVALUATE_MODULES); only their numeric results are kept, so a module cannot echo references.
"""

import dataclasses
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metrics.errors import MetricInputError
from service.db.models import Evaluation, TestSet
from service.db.session import Database
from service.domain_errors import DomainError, Invalid
from service.evaluations import job_store
from service.evaluations.errors import PredictionsIncomplete
from service.evaluations.generalization import generalization
from service.evaluations.probabilities import calibration_and_estimator
from service.test_sets.scoring import normalize, report
from service.test_sets.store import load_training_targets
from service.test_sets.submissions import released_slices, set_targets

log = logging.getLogger("heldout.evaluations")
_modules: dict[str, Any] = {}
_modules_lock = threading.Lock()


def allow_list(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


def check_extra(requested: list[str], allowed: list[str]) -> None:
    unknown = [name for name in requested if name not in allowed]
    if unknown:
        raise Invalid(f"not in HELDOUT_EVALUATE_MODULES: {', '.join(unknown)}", field="extra_metrics")


def module_name(path: str) -> str:
    p = Path(path)
    return p.stem if p.suffix == ".py" else p.name


def _load(path: str) -> Any:
    with _modules_lock:
        if path not in _modules:
            import evaluate

            _modules[path] = evaluate.load(path)
        return _modules[path]


def extra_scores(paths: list[str], predictions: list[Any], references: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in paths:
        result = _load(path).compute(predictions=predictions, references=references) or {}
        for key, value in result.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{module_name(path)}.{key}"] = float(value)
    return out


@dataclass(frozen=True)
class ReduceOptions:
    n_resamples: int
    workers: int | None
    min_slice_size: int = 30
    """Slices of open sets: groups smaller than this pool into ``other`` (HELDOUT_MIN_SLICE_SIZE)."""
    overfitting_gap: float = 0.05
    """The generalization gap's lower bound past which a model overfits (HELDOUT_OVERFITTING_GAP)."""


def compute(db: Database, job: Evaluation, test_set: TestSet, options: ReduceOptions) -> dict[str, Any]:
    """The job's result; raises a DomainError or MetricInputError with a message safe to store and show.

    Slices follow the blind-set rules: groups of at least ``min_slice_size``, none for a Ladder set.
    """
    target = set_targets(db, test_set)
    outputs, probabilities = job_store.predictions_and_probabilities(db, job.id)
    n_train = int(job.options.get("generalization_gap", 0))
    size = len(target.ids)
    if len(outputs) != size + n_train:
        raise PredictionsIncomplete(f"{len(outputs)} predictions for {size + n_train} records")
    raw, train_raw = outputs[:size], outputs[size:]
    probabilities = probabilities[:size] if probabilities is not None else None
    predicted = normalize(raw, target)
    min_slice_size = None if target.config.ladder else options.min_slice_size
    scored = report(
        predicted,
        target,
        metrics=job.metrics,
        n_resamples=options.n_resamples,
        workers=options.workers,
        min_slice_size=min_slice_size,
    )
    metrics: dict[str, float] = dict(scored.metrics)
    metrics.update(extra_scores(job.extra_metrics, predicted, target.targets))
    model_labels = job.options.get("labels")
    fitted = None
    if probabilities is not None and model_labels:
        fitted = calibration_and_estimator(model_labels, probabilities, target.targets, options.n_resamples)
    return {
        "metrics": metrics,
        "intervals": {n: {"low": i.low, "high": i.high, "level": i.level} for n, i in scored.intervals.items()},
        **released_slices(scored),
        "calibration": None if fitted is None else dataclasses.asdict(fitted[0]),
        # Internal: the maps drift checks estimate performance with; never part of a response.
        "performance_estimator": None if fitted is None else fitted[1].to_json(),
        "generalization": (
            generalization(
                target,
                predicted,
                train_raw,
                load_training_targets(db, test_set.id),
                list(scored.metrics),
                n_resamples=options.n_resamples,
                workers=options.workers,
                margin=options.overfitting_gap,
            )
            if n_train
            else None
        ),
    }


def reduce(
    db: Database, job: Evaluation, test_set: TestSet | None, options: ReduceOptions
) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None) or (None, error message)."""
    if test_set is None or test_set.deleted_at is not None:
        return None, "the test set was deleted"
    try:
        return compute(db, job, test_set, options), None
    except DomainError as exc:
        return None, exc.detail
    except MetricInputError as exc:
        return None, f"scoring failed on {exc.field or 'the predictions'}"
    except Exception as exc:
        # Only the type: an extra metric module's message could quote a reference.
        log.error("evaluation %s: reduction failed with %s", job.id, type(exc).__name__)
        return None, f"scoring failed ({type(exc).__name__})"
