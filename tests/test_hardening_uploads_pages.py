"""GET /v1/test-sets/{id}/inputs pages stop at a byte budget (#12), and paging still returns every record once."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.test_sets import store
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]

RECORD_CHARS = 1_000_000


def pages(client: TestClient, set_id: int, limit: int) -> list[dict[str, Any]]:
    found, cursor = [], 0
    while cursor is not None:
        response = client.get(f"/v1/test-sets/{set_id}/inputs?cursor={cursor}&limit={limit}", headers=auth("reader"))
        assert response.status_code == 200, response.text
        found.append(response.json())
        cursor = response.json()["next_cursor"]
        assert len(found) < 100, "paging does not end"
    return found


def test_a_page_of_huge_records_is_bounded_and_paging_returns_each_once(db_client: TestClient) -> None:
    rows = [{"id": f"r{i}", "text": f"{i} " + "x" * (RECORD_CHARS - 10), "label": "a"} for i in range(12)]
    body = uploaded(db_client, jsonl(rows), name="huge")
    found = pages(db_client, body["id"], limit=1000)
    assert len(found) > 1
    for page in found:
        held = sum(len(item["id"]) + len(item["text"].encode()) for item in page["items"])
        assert held <= store.INPUTS_PAGE_BYTES + RECORD_CHARS, held
        assert page["total"] == 12
    ids = [item["id"] for page in found for item in page["items"]]
    assert ids == [row["id"] for row in rows]
    assert [item["text"] for page in found for item in page["items"]] == [row["text"] for row in rows]


@pytest.mark.parametrize("budget", [1, 2_500, 10_000])
def test_small_budgets_still_make_progress_and_lose_nothing(
    db_client: TestClient, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    monkeypatch.setattr(store, "INPUTS_PAGE_BYTES", budget)
    rows = [{"id": f"r{i}", "text": f"{i:03d} " + "x" * 996, "label": "a"} for i in range(40)]
    body = uploaded(db_client, jsonl(rows), name="pages")
    found = pages(db_client, body["id"], limit=7)
    sizes = [len(page["items"]) for page in found]
    assert all(1 <= size <= 7 for size in sizes)
    assert max(sizes) == min(7, max(1, budget // 1004)), sizes
    assert [item["id"] for page in found for item in page["items"]] == [row["id"] for row in rows]
