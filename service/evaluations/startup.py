"""Start-up and shutdown of this process's evaluation worker, called from the app's lifespan."""

from fastapi import FastAPI

from service.db.session import Database
from service.evaluations.evaluation_worker import EvaluationWorker
from service.evaluations.runner import EngineRunner
from service.settings import Settings


async def start_evaluations(app: FastAPI, settings: Settings, db: Database) -> None:
    """A worker runs where a model is served (and HELDOUT_EVALUATION_WORKER is on); others only queue jobs."""
    app.state.evaluations = None
    engine = getattr(app.state, "inference", None)
    if engine is None or not settings.evaluation_worker:
        return
    worker = EvaluationWorker(
        db,
        EngineRunner(engine, settings.max_inputs),
        lease_s=settings.evaluation_lease_s,
        poll_s=settings.evaluation_poll_s,
        max_attempts=settings.evaluation_max_attempts,
        n_resamples=min(settings.scoring_resamples, settings.max_resamples),
        metric_workers=settings.metric_workers,
        min_slice_size=settings.min_slice_size,
        overfitting_gap=settings.overfitting_gap,
    )
    worker.start()
    app.state.evaluations = worker


async def stop_evaluations(app: FastAPI) -> None:
    """Before the model stops: the shard in hand goes back to the queue for a restart or another replica."""
    worker: EvaluationWorker | None = getattr(app.state, "evaluations", None)
    if worker is not None:
        await worker.aclose()
