"""A feedback batch in: stored against the prediction log, then the online gauges of each model it touched.

The served model's label set (when the feedback is for it) bounds the labels accepted, and its prediction
log buffer is flushed when ids are not found yet, since predictions served a moment ago may still sit there.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from monitors.drift_gauges import count_feedback, publish_online
from monitors.online_accuracy import OnlineScores
from service.db.session import Database
from service.inference.engine import InferenceEngine
from service.monitoring.feedback import FeedbackItem, record_feedback, window_scores
from service.monitoring.maintenance import online_window
from service.settings import Settings


@dataclass(frozen=True)
class ModelScores:
    model: str
    scores: OnlineScores


def take_feedback(
    db: Database, settings: Settings, engine: InferenceEngine | None, items: Sequence[FeedbackItem], created_by: str
) -> list[ModelScores]:
    """Store the batch (all or nothing), count it and publish the online scores of each model it touched."""

    def labels_of(model: str) -> Sequence[str] | None:
        served = engine is not None and engine.loaded.name == model and engine.loaded.labels
        return engine.loaded.labels if served and engine is not None else None

    flush = engine.flush_log if engine is not None else None
    accepted = record_feedback(db, items, created_by, labels_of, flush)
    window = online_window(settings)
    online = []
    for model, n in accepted.items():
        count_feedback(model, n)
        scores = window_scores(db, model, window)
        if scores is not None:
            publish_online(model, scores)
            online.append(ModelScores(model, scores))
    return online
