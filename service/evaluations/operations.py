"""The evaluation use cases behind the routes: create a job, describe it, compare two finished jobs."""

from typing import Any

from service.db.models import Evaluation, TestSet
from service.db.session import Database
from service.domain_errors import Invalid
from service.evaluations import job_store, results
from service.evaluations.errors import EvaluationNotSucceeded, NoCalibration, NoModelServed, TaskMismatch
from service.evaluations.runner import DEFAULT_MAX_NEW_TOKENS
from service.inference.engine import InferenceEngine
from service.settings import Settings
from service.tasks import Task
from service.test_sets.config import METRICS
from service.test_sets.paired import compare
from service.test_sets.scoring import normalize
from service.test_sets.store import get_test_set, latest_by_name, training_size
from service.test_sets.submissions import set_targets


def _described(task: str, multilabel: bool) -> str:
    return "multi-label classification" if multilabel else str(task)


def resolve_test_set(db: Database, ref: int | str) -> TestSet:
    with db.session() as session:
        return get_test_set(session, ref) if isinstance(ref, int) else latest_by_name(session, ref)


def served_identity(engine: InferenceEngine | None) -> job_store.ModelIdentity | None:
    """What a job records of the model this replica serves, if any."""
    if engine is None:
        return None
    loaded = engine.loaded
    return job_store.ModelIdentity(loaded.name, loaded.version, loaded.task.task, loaded.task.multilabel)


def chat_options(engine: InferenceEngine | None, chat: bool, system: str | None) -> dict[str, Any]:
    """A chat evaluation sends each input as the served model gets it on /v1/chat/completions."""
    if system is not None and not chat:
        raise Invalid("applies with chat only", field="system")
    if not chat:
        return {}
    if engine is None or not engine.chats:
        raise Invalid("the served model has no chat template (set HELDOUT_CHAT_TEMPLATE)", field="chat")
    return {"chat": True, "system": system} if system is not None else {"chat": True}


def create(
    db: Database,
    settings: Settings,
    engine: InferenceEngine | None,
    *,
    test_set: int | str,
    metrics: list[str] | None,
    extra_metrics: list[str],
    max_new_tokens: int | None,
    created_by: str,
    chat: bool = False,
    system: str | None = None,
    generalization_gap: bool = False,
) -> Evaluation:
    model = served_identity(engine)
    if model is None:
        raise NoModelServed("no model is served by this replica; start heldout with --model to run evaluations")
    row = resolve_test_set(db, test_set)
    if (Task(row.task), row.multilabel) != (model.task, model.multilabel):
        raise TaskMismatch(
            f"test set {row.name} v{row.version} is a {_described(row.task, row.multilabel)} set but model "
            f"{model.name} is a {_described(model.task, model.multilabel)} model",
        )
    known = METRICS[Task(row.task)]
    unknown = [m for m in metrics or [] if m not in known]
    if unknown:
        raise Invalid(f"unknown {', '.join(unknown)}; use {', '.join(known)}", field="metrics")
    results.check_extra(extra_metrics, results.allow_list(settings.evaluate_modules))
    options: dict[str, Any] = {}
    if model.task is Task.generation:
        tokens = max_new_tokens or min(DEFAULT_MAX_NEW_TOKENS, settings.max_new_tokens)
        if tokens > settings.max_new_tokens:
            raise Invalid(f"exceeds HELDOUT_MAX_NEW_TOKENS ({settings.max_new_tokens})", field="max_new_tokens")
        options["max_new_tokens"] = tokens
        options |= chat_options(engine, chat, system)
    elif max_new_tokens is not None:
        raise Invalid("applies to generation models only", field="max_new_tokens")
    elif chat:
        raise Invalid("applies to generation models only", field="chat")
    elif engine is not None and not model.multilabel:
        options["labels"] = list(engine.loaded.labels)
    extra = 0
    if generalization_gap:
        extra = training_size(db, row.id)
        if extra == 0:
            raise Invalid(
                f"test set {row.name} v{row.version} kept no labelled training sample: upload it with a "
                "training_file whose records carry labels (or references)",
                field="generalization_gap",
            )
        options["generalization_gap"] = extra
    return job_store.create(
        db,
        row,
        model,
        metrics=list(dict.fromkeys(metrics or known)),
        extra_metrics=list(dict.fromkeys(extra_metrics)),
        options=options,
        shard_size=settings.evaluation_shard_size,
        created_by=created_by,
        extra=extra,
    )


def info(job: Evaluation) -> dict[str, Any]:
    result = job.result or {}
    return {
        "id": job.id,
        "status": job.status,
        "progress": {"done": job.done, "total": job.total},
        "model": job.model,
        "model_version": job.model_version,
        "test_set": {
            "id": job.test_set_id,
            "name": job.test_set_name,
            "version": job.test_set_version,
            "sha256": job.test_set_sha256,
        },
        "test_set_sha256": job.test_set_sha256,
        "metrics": result.get("metrics", {}),
        "intervals": result.get("intervals", {}),
        "calibration": result.get("calibration"),
        "slices": result.get("slices"),
        "worst_slice": result.get("worst_slice"),
        "generalization": result.get("generalization"),
        "error": job.error,
        "human": job.human,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def calibration(db: Database, evaluation_id: int) -> tuple[dict[str, Any], str]:
    """A succeeded evaluation's stored calibration, and a title naming the model and the set."""
    job = job_store.get(db, evaluation_id)
    if job.status != "succeeded":
        raise EvaluationNotSucceeded(f"evaluation {job.id} is {job.status}; only a succeeded one has a calibration")
    found = (job.result or {}).get("calibration")
    if found is None:
        raise NoCalibration(
            f"evaluation {job.id} has no calibration: only single-label classifiers whose labels cover the set's "
            "have one"
        )
    return found, f"{job.model} on {job.test_set_name} v{job.test_set_version}"


def compare_jobs(
    db: Database,
    settings: Settings,
    baseline_id: int,
    candidate_id: int,
    *,
    test: str,
    n_resamples: int,
    seed: int | None,
) -> dict[str, Any]:
    """Paired test per built-in metric, both jobs' predictions on the same test-set version."""
    baseline, candidate = job_store.get(db, baseline_id), job_store.get(db, candidate_id)
    for field, job in (("baseline", baseline), ("candidate", candidate)):
        if job.status != "succeeded":
            raise EvaluationNotSucceeded(f"{field}: evaluation {job.id} is {job.status}, not succeeded")
    if (baseline.test_set_id, baseline.test_set_sha256) != (candidate.test_set_id, candidate.test_set_sha256):
        raise Invalid(
            f"evaluations ran on different test sets: {baseline.test_set_name} v{baseline.test_set_version} and "
            f"{candidate.test_set_name} v{candidate.test_set_version}; a paired test needs the same examples",
            field="candidate",
        )
    if n_resamples > settings.max_resamples:
        raise Invalid(f"exceeds HELDOUT_MAX_RESAMPLES ({settings.max_resamples})", field="n_resamples")
    metrics = [m for m in baseline.metrics if m in candidate.metrics]
    if not metrics:
        raise Invalid("the two evaluations share no metric", field="candidate")
    with db.session() as session:
        row = get_test_set(session, baseline.test_set_id)
    target = set_targets(db, row)
    # A job with the generalization gap also predicted its training sample, after the set's records.
    size = len(target.ids)
    base = normalize(job_store.predictions(db, baseline.id)[:size], target)
    cand = normalize(job_store.predictions(db, candidate.id)[:size], target)
    paired = compare(
        target,
        base,
        cand,
        metrics=metrics,
        test=test,
        n_resamples=n_resamples,
        seed=seed,
        workers=settings.metric_workers,
    )
    return {
        "baseline": baseline.id,
        "candidate": candidate.id,
        "test_set": info(baseline)["test_set"],
        "results": paired,
    }
