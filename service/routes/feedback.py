"""Delayed ground truth: parse, hand to ``service.monitoring.online`` (store, refresh the gauges), return."""

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from service.deps import DbDep, EvaluatorDep, OptionalEngineDep, SettingsDep
from service.monitoring.feedback import FeedbackItem
from service.monitoring.online import take_feedback
from service.schemas.feedback import FeedbackRequest, FeedbackResponse, OnlineScores

router = APIRouter(prefix="/v1", tags=["monitoring"])


@router.post("/feedback", response_model=FeedbackResponse)
async def feedback(
    body: FeedbackRequest, principal: EvaluatorDep, db: DbDep, settings: SettingsDep, engine: OptionalEngineDep
) -> FeedbackResponse:
    items = [FeedbackItem(item.prediction_id, item.label) for item in body.items]
    online = await run_in_threadpool(take_feedback, db, settings, engine, items, principal.key_id)
    return FeedbackResponse(
        accepted=len(items),
        online=[OnlineScores(model=m.model, n=m.scores.n, accuracy=m.scores.accuracy, f1=m.scores.f1) for m in online],
    )
