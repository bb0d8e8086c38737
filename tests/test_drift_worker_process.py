"""The default executor: a check runs in a spawned, low-priority worker process, and the app keeps answering."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.settings import Settings
from tests.conftest import auth
from tests.monitoring_fixtures import MODEL, insert_rows, iso, monitored_client, synthetic_rows, wait_for_check


def test_a_check_in_the_worker_process_succeeds_while_requests_are_answered(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'heldout.db'}"
    start = datetime.now(UTC) - timedelta(hours=3)
    insert_rows(url, tmp_path, synthetic_rows(600, shifted=False, seed=1, start=start))
    insert_rows(url, tmp_path, synthetic_rows(600, shifted=True, seed=2, start=start + timedelta(hours=1)))
    with monitored_client(make_settings, database_url=url, drift_executor="process") as client:
        reference = client.post(
            "/v1/drift/reference",
            headers=auth("evaluator"),
            json={"from": iso(start), "to": iso(start + timedelta(minutes=30)), "model": MODEL},
        )
        assert reference.status_code == 201, reference.text
        window = {"from": iso(start + timedelta(hours=1)), "to": iso(start + timedelta(hours=2))}
        check = client.post("/v1/drift/checks", headers=auth("evaluator"), json=window).json()
        slowest = 0.0
        while client.get(f"/v1/drift/checks/{check['id']}", headers=auth("reader")).json()["status"] in (
            "queued",
            "running",
        ):
            began = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            slowest = max(slowest, time.perf_counter() - began)
            time.sleep(0.1)
        result = wait_for_check(client, check["id"])
    assert result["status"] == "succeeded", result
    assert result["dataset_drift"]
    # Evidently's import and work happen in the other process: the event loop never stalls for seconds.
    assert slowest < 1.0
