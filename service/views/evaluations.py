"""Evaluation outputs pages → the contract of ``/v1/evaluations/{id}/outputs``."""

from typing import Any

from service.evaluations.ratings import OutputPage


def outputs_page(page: OutputPage) -> dict[str, Any]:
    return {
        "items": [{"id": i, "source": source, "output": output} for i, source, output in page.items],
        "next_cursor": page.next_cursor,
        "total": page.total,
    }
