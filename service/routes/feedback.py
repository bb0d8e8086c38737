"""Delayed ground truth: parse, store (joined to the prediction log), refresh the online gauges, return."""

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from monitors.drift_gauges import count_feedback, publish_online
from service.auth import Principal, Role, require
from service.db.session import Database
from service.monitoring.feedback import FeedbackItem, record_feedback, window_scores
from service.monitoring.maintenance import online_window
from service.monitoring.startup import served_model
from service.schemas.feedback import FeedbackRequest, FeedbackResponse, OnlineScores

Evaluator = Annotated[Principal, Depends(require(Role.evaluator))]
router = APIRouter(prefix="/v1", tags=["monitoring"])


@router.post("/feedback", response_model=FeedbackResponse)
async def feedback(body: FeedbackRequest, request: Request, principal: Evaluator) -> FeedbackResponse:
    db: Database = request.app.state.db
    engine = served_model(request)

    def labels_of(model: str) -> Sequence[str] | None:
        served = engine is not None and engine.loaded.name == model and engine.loaded.labels
        return engine.loaded.labels if served and engine is not None else None

    items = [FeedbackItem(item.prediction_id, item.label) for item in body.items]
    flush = engine.flush_log if engine is not None else None
    accepted = await run_in_threadpool(record_feedback, db, items, principal.key_id, labels_of, flush)
    window = online_window(request.app.state.settings)
    online = []
    for model, n in accepted.items():
        count_feedback(model, n)
        scores = await run_in_threadpool(window_scores, db, model, window)
        if scores is not None:
            publish_online(model, scores)
            online.append(OnlineScores(model=model, n=scores.n, accuracy=scores.accuracy, f1=scores.f1))
    return FeedbackResponse(accepted=len(items), online=online)
