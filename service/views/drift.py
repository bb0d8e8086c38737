"""Drift reference and check rows → the contracts of ``/v1/drift``."""

from service.db.models import DriftCheck, DriftReference
from service.schemas.drift import CheckInfo, ColumnResult, EstimatedPerformance, ReferenceInfo, WindowInfo


def reference_info(row: DriftReference) -> ReferenceInfo:
    return ReferenceInfo(
        id=row.id,
        model=row.model,
        version=row.version,
        source=row.source,
        rows=row.rows,
        columns=row.columns,
        created_at=row.created_at,
    )


def check_info(row: DriftCheck) -> CheckInfo:
    result = row.result or {}
    columns = result.get("columns")
    estimate = result.get("estimated_performance")
    return CheckInfo(
        id=row.id,
        model=row.model,
        status=row.status,
        reference=row.reference_id,
        tick=row.tick,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        window=WindowInfo(start=row.window_from, end=row.window_to, rows=row.rows),
        columns=[ColumnResult(**c) for c in columns] if columns is not None else None,
        share_of_drifted_columns=result.get("share_of_drifted_columns"),
        dataset_drift=result.get("dataset_drift"),
        estimated_performance=EstimatedPerformance(**estimate) if estimate is not None else None,
        estimated_performance_reason=result.get("estimated_performance_reason"),
        error=row.error,
    )
