"""Score an external model on the demo's blind test set, as a client of heldout would.

Run against a server (the demo: ``heldout serve``) with an evaluator key:

    python examples/score_blind_set.py --url http://localhost:8000 --key "$KEY"

1. Pages ``GET /v1/test-sets/{id}/inputs`` until ``next_cursor`` is null: ids and texts, never labels.
2. First submission: a keyword baseline (counts of positive and negative review words), posted to
   ``POST /v1/test-sets/{id}/scores``. Only aggregates come back.
3. Second submission: the served model's predictions (``POST /v1/predict``), standing in for your own
   model. Under the Ladder the released number moves only if this submission beats the key's best in a
   paired test; otherwise the old number is released again.

``--save FILE`` writes the second submission's body, so it can be posted again by hand (curl ``-d @FILE``).
Each submission spends one of the key's daily budget. Uses only httpx, as any client could.
"""

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

import httpx

# Review words that lean one way; a text with more rotten than fresh words is called rotten.
FRESH_WORDS = {
    "best", "beautiful", "brilliant", "charming", "delight", "delightful", "enjoyable", "entertaining", "fun",
    "funny", "gorgeous", "great", "heartfelt", "moving", "perfect", "pleasure", "powerful", "remarkable",
    "satisfying", "smart", "strong", "stunning", "superb", "touching", "triumph", "wonderful", "witty",
}  # fmt: skip
ROTTEN_WORDS = {
    "awful", "bad", "bland", "boring", "clumsy", "drags", "dull", "empty", "flat", "forgettable", "lifeless",
    "mediocre", "mess", "nothing", "pointless", "silly", "stupid", "tedious", "tiresome", "unfunny", "waste",
    "weak", "worst",
}  # fmt: skip
PREDICT_BATCH = 256  # HELDOUT_MAX_INPUTS' default


def keyword_label(text: str) -> str:
    words = re.findall(r"[a-z]+", text.lower())
    score = sum(word in FRESH_WORDS for word in words) - sum(word in ROTTEN_WORDS for word in words)
    return "rotten" if score < 0 else "fresh"


def find_test_set(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get("/v1/test-sets", params={"name": name})
    response.raise_for_status()
    items = response.json()["items"]
    if not items:
        raise SystemExit(f"no test set named {name!r} on this server (the demo registers rotten-tomatoes)")
    found: dict[str, Any] = items[0]
    return found


def read_inputs(client: httpx.Client, test_set: int, page_size: int) -> tuple[list[dict[str, str]], int]:
    """Every (id, text) of the set, in order, and the number of pages it took."""
    items: list[dict[str, str]] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        response = client.get(f"/v1/test-sets/{test_set}/inputs", params={"cursor": cursor, "limit": page_size})
        response.raise_for_status()
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        pages += 1
    return items, pages


def served_model_labels(client: httpx.Client, texts: list[str]) -> list[str]:
    labels: list[str] = []
    for start in range(0, len(texts), PREDICT_BATCH):
        response = client.post("/v1/predict", json={"inputs": texts[start : start + PREDICT_BATCH]})
        response.raise_for_status()
        labels.extend(prediction["label"] for prediction in response.json()["predictions"])
    return labels


def submit(client: httpx.Client, test_set: int, predictions: dict[str, str]) -> dict[str, Any]:
    response = client.post(f"/v1/test-sets/{test_set}/scores", json={"predictions": predictions})
    if response.status_code == 429:
        raise SystemExit(f"this key's daily budget is spent: {response.json()['detail']}")
    response.raise_for_status()
    released: dict[str, Any] = response.json()
    return released


def released(result: dict[str, Any]) -> str:
    """The released numbers as one line: each metric with its interval."""
    parts = []
    for metric, value in result["metrics"].items():
        interval = result["intervals"].get(metric)
        bounds = f" [{interval['low']:.2f}, {interval['high']:.2f}]" if interval else ""
        parts.append(f"{metric} {value:.2f}{bounds}" if value is not None else f"{metric} undefined")
    budget = result["budget_remaining"]
    return f"{', '.join(parts)} ({result['mode']} mode; {'no budget' if budget is None else f'{budget} left today'})"


def ladder_note(first: dict[str, Any], second: dict[str, Any]) -> str:
    if second["mode"] != "ladder":
        return "open mode: every submission's own scores are released"
    if second["metrics"] == first["metrics"]:
        return "the Ladder released the same number again: the second submission did not beat the best in a paired test"
    return "the Ladder released a new number: the second submission beat the best in a paired test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="http://localhost:8000", help="The heldout server.")
    parser.add_argument("--key", default=os.environ.get("KEY"), help="An evaluator key (default: $KEY).")
    parser.add_argument("--test-set", default="rotten-tomatoes", help="The blind test set's name.")
    parser.add_argument("--page-size", type=int, default=1000, help="Inputs per page of /inputs.")
    parser.add_argument("--save", type=Path, help="Write the second submission's body (JSON) here.")
    args = parser.parse_args()
    if not args.key:
        raise SystemExit("give an evaluator key with --key or $KEY")
    headers = {"Authorization": f"Bearer {args.key}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as client:
        test_set = find_test_set(client, args.test_set)
        items, pages = read_inputs(client, test_set["id"], args.page_size)
        print(f"{test_set['name']} (id {test_set['id']}): {len(items)} inputs in {pages} page(s), no labels")
        ids = [item["id"] for item in items]
        texts = [item["text"] for item in items]

        keywords = dict(zip(ids, map(keyword_label, texts), strict=True))
        first = submit(client, test_set["id"], keywords)
        print(f"1. keyword baseline: {released(first)}")

        model = dict(zip(ids, served_model_labels(client, texts), strict=True))
        second = submit(client, test_set["id"], model)
        print(f"2. served model:     {released(second)}")
        print(f"   {ladder_note(first, second)}")
    if args.save:
        args.save.write_text(json.dumps({"predictions": model}), encoding="utf-8")
        print(f"saved the second submission to {args.save}")


if __name__ == "__main__":
    main()
