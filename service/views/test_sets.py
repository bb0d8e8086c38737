"""Test-set rows and scoring outcomes → the contracts of ``/v1/test-sets``."""

from typing import Any

from service.db.models import TestSet
from service.schemas.jsonable import to_jsonable
from service.test_sets.store import InputPage
from service.test_sets.submissions import ScoreOutcome


def test_set_info(row: TestSet) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "task": row.task,
        "sha256": row.sha256,
        "size": row.size,
        "labels": row.labels,
        "multilabel": row.multilabel,
        "settings": row.settings,
        "audit": row.audit,
        "created_at": row.created_at,
    }


def inputs_page(page: InputPage) -> dict[str, Any]:
    return {
        "items": [{"id": i, "text": t} for i, t in page.items],
        "next_cursor": page.next_cursor,
        "total": page.total,
    }


def score_response(outcome: ScoreOutcome) -> dict[str, Any]:
    row = outcome.test_set
    return {
        "test_set": {"id": row.id, "name": row.name, "version": row.version, "sha256": row.sha256},
        "mode": outcome.mode,
        "metrics": to_jsonable(outcome.metrics),
        "intervals": to_jsonable(outcome.intervals),
        "budget_remaining": outcome.budget_remaining,
        "slices": to_jsonable(outcome.slices),
        "worst_slice": to_jsonable(outcome.worst_slice),
    }
