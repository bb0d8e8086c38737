"""An adaptive attacker against the holdout: open mode overfits, the Ladder does not (Blum & Hardt 2015).

The labels are fair coin flips, so any prediction vector chosen without seeing them has true
(population) accuracy exactly 0.5. The attacker flips a few random predictions per submission and
keeps the change whenever the reported score goes up. In open mode each report leaks whether the
flips helped, and the reported score climbs far above 0.5. Under the Ladder small gains never beat the
paired test, so the reported score, and what the attacker actually reaches, stay at the truth:
within the holdout's own sampling error of it (SE = sqrt(0.25 / N)) and of where the attack started.
"""

import math
import random

from fastapi.testclient import TestClient

from tests.fixtures_test_sets import jsonl, score, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]

N = 1000
SUBMISSIONS = 150
FLIPS = 10
TRUTH = 0.5
SE = math.sqrt(TRUTH * (1 - TRUTH) / N)


def attack(client: TestClient, test_set_id: int, seed: int) -> tuple[list[str], float, list[str]]:
    """Returns the first submission, the final reported score and the final predictions."""
    rng = random.Random(seed)
    ids = [f"q{i}" for i in range(N)]
    current = [rng.choice("ab") for _ in ids]

    def reported(predictions: list[str]) -> float:
        response = score(client, test_set_id, dict(zip(ids, predictions, strict=True)))
        assert response.status_code == 200, response.text
        return float(response.json()["metrics"]["accuracy"])

    first = current
    best = reported(current)
    for _ in range(SUBMISSIONS):
        candidate = list(current)
        for i in rng.sample(range(N), FLIPS):
            candidate[i] = "b" if candidate[i] == "a" else "a"
        value = reported(candidate)
        if value > best:
            current, best = candidate, value
    return first, best, current


def test_adaptive_attacker_climbs_in_open_mode_but_not_under_the_ladder(db_client: TestClient) -> None:
    rng = random.Random(2015)
    labels = [rng.choice("ab") for _ in range(N)]
    rows = [{"id": f"q{i}", "text": f"item {i}", "label": label} for i, label in enumerate(labels)]

    def holdout(predictions: list[str]) -> float:
        return sum(p == t for p, t in zip(predictions, labels, strict=True)) / N

    open_set = uploaded(db_client, jsonl(rows), name="open", ladder_metric="accuracy")
    first, open_reported, open_predictions = attack(db_client, open_set["id"], seed=1)
    assert open_reported == holdout(open_predictions)
    assert open_reported - holdout(first) > 0.06
    assert open_reported - TRUTH > 4 * SE, open_reported

    ladder_set = uploaded(db_client, jsonl(rows), name="ladder", ladder=True, ladder_metric="accuracy")
    first, ladder_reported, ladder_predictions = attack(db_client, ladder_set["id"], seed=1)
    assert abs(ladder_reported - TRUTH) <= 2.5 * SE + 0.005, ladder_reported
    assert ladder_reported - round(holdout(first), 2) <= 0.02
    assert holdout(ladder_predictions) - holdout(first) <= 0.02
