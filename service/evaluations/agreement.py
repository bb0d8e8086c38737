"""How well each automatic metric agrees with people, across the rated evaluations of one test-set version.

Each succeeded evaluation with ratings is a system. Its metrics are recomputed from its stored
predictions as its result was, so the bootstrap can draw the same items for every system and metric
at once; its human score is the mean of its rated items' mean ratings.
"""

from typing import Any

import numpy as np
from sqlalchemy import select

from metrics.generation import point_score, score_function, scored_width
from metrics.generation_stats import extract_statistics
from metrics.human import Agreement, agreement, item_means
from service.db.models import Evaluation, EvaluationRating, TestSet
from service.db.session import Database
from service.evaluations import job_store
from service.evaluations.errors import NotRateable, TooFewRatedSystems
from service.settings import Settings
from service.tasks import Task
from service.test_sets.config import GENERATION_METRICS
from service.test_sets.scoring import CONFIDENCE_LEVEL, SEED, generation_specs, normalize
from service.test_sets.store import get_test_set
from service.test_sets.submissions import set_targets

MIN_SYSTEMS = 3


def _rated(db: Database, test_set_id: int) -> tuple[TestSet, list[Evaluation]]:
    with db.session() as session:
        row = get_test_set(session, test_set_id)
        jobs = session.scalars(
            select(Evaluation)
            .where(
                Evaluation.test_set_id == test_set_id,
                Evaluation.status == "succeeded",
                Evaluation.human.is_not(None),
            )
            .order_by(Evaluation.id)
        ).all()
    if row.task != Task.generation.value:
        raise NotRateable(f"test set {row.name} v{row.version} is a {row.task} set; ratings are for generation")
    if len(jobs) < MIN_SYSTEMS:
        raise TooFewRatedSystems(
            f"agreement needs at least {MIN_SYSTEMS} rated evaluations of test set {row.name} v{row.version}; "
            f"it has {len(jobs)}"
        )
    return row, list(jobs)


def _human_means(db: Database, jobs: list[Evaluation], n_items: int) -> np.ndarray:
    """(n_items, systems) mean rating per item and system, NaN where unrated."""
    columns = []
    with db.session() as session:
        for job in jobs:
            rows = session.execute(
                select(EvaluationRating.position, EvaluationRating.rating).where(
                    EvaluationRating.evaluation_id == job.id
                )
            ).all()
            positions = np.array([p for p, _ in rows], dtype=np.int64)
            columns.append(item_means(positions, np.array([r for _, r in rows], dtype=np.float64), n_items))
    return np.column_stack(columns)


def test_set_agreement(db: Database, settings: Settings, test_set_id: int) -> dict[str, Any]:
    """Per metric shared by the rated systems: Kendall tau-b and Pearson r against the human means."""
    row, jobs = _rated(db, test_set_id)
    names = [name for name in GENERATION_METRICS if all(name in job.metrics for job in jobs)]
    target = set_targets(db, row)
    systems = [normalize(job_store.predictions(db, job.id), target) for job in jobs]
    specs = generation_specs(target, names)
    stats = extract_statistics(specs, systems, target.targets, workers=settings.metric_workers)
    human = _human_means(db, jobs, len(target.ids))
    n_resamples = min(settings.scoring_resamples, settings.max_resamples)
    results: dict[str, Agreement] = {}
    scores: list[dict[str, float]] = [{} for _ in jobs]
    for name, spec, array in zip(names, specs, stats, strict=True):
        scored = list(array[:, :, : scored_width(spec)].astype(np.float64))
        results[name] = agreement(
            scored, score_function(spec), human, n_resamples=n_resamples, seed=SEED, level=CONFIDENCE_LEVEL
        )
        for k, system in enumerate(array):
            scores[k][name] = float(point_score(spec, system).score)
    return {
        "test_set": {"id": row.id, "name": row.name, "version": row.version, "sha256": row.sha256},
        "n_resamples": n_resamples,
        "systems": [
            {
                "evaluation": job.id,
                "model": job.model,
                "model_version": job.model_version,
                "human_mean": (job.human or {}).get("mean"),
                "rated_items": (job.human or {}).get("n_items"),
                "metrics": metrics,
            }
            for job, metrics in zip(jobs, scores, strict=True)
        ],
        "metrics": results,
    }
