"""The upload audit against direct computation on the uploaded data, on both databases."""

import hashlib
import random
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from service.test_sets import staging, store
from tests.fixtures_test_sets import jsonl, upload, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]


def normalised(text: str) -> str:
    """The README's normalisation: NFKC, case folding, non-alphanumeric runs to one space, trimmed."""
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def dataset(seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    base = [f"Sentence number {i} about things" for i in range(60)]
    rows = []
    for i in range(150):
        text = rng.choice(base)
        variant = rng.random()
        if variant < 0.2:
            text = text.upper() + "!!"
        elif variant < 0.3:
            text = "  " + text.replace(" ", "   ") + " ."
        elif variant < 0.35:
            text = rng.choice(["", "   ", "\t\n"])
        label = rng.choices(["a", "b", "c"], weights=[20, 2, 1])[0]
        rows.append({"id": f"x{i}", "text": text, "label": label})
    return rows


def groups(rows: list[dict[str, Any]], key: Any) -> list[list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by[key(row["text"])].append(row)
    return [g for g in by.values() if len(g) > 1]


def nearest_rank(values: list[int], p: int) -> int:
    return int(np.percentile(values, p, method="inverted_cdf"))


def test_audit_matches_direct_computation(db_client: TestClient) -> None:
    rows = dataset()
    audit = uploaded(db_client, jsonl(rows))["audit"]

    exact = groups(rows, lambda t: t)
    assert audit["duplicates"]["exact"]["groups"] == len(exact)
    assert audit["duplicates"]["exact"]["records"] == sum(map(len, exact))
    normal = groups(rows, normalised)
    assert audit["duplicates"]["normalized"]["groups"] == len(normal)
    assert audit["duplicates"]["normalized"]["records"] == sum(map(len, normal))
    conflicting = [g for g in normal if len({r["label"] for r in g}) > 1]
    assert audit["duplicates"]["conflicting_targets"]["groups"] == len(conflicting)
    assert audit["duplicates"]["conflicting_targets"]["records"] == sum(map(len, conflicting))
    for example in audit["duplicates"]["normalized"]["example_ids"]:
        texts = {normalised(r["text"]) for r in rows if r["id"] in example}
        assert len(example) >= 2 and len(texts) == 1

    empty = [r["id"] for r in rows if not r["text"].strip()]
    assert audit["empty_inputs"]["count"] == len(empty)
    assert audit["empty_inputs"]["example_ids"] == empty[:10]

    assert audit["label_distribution"] == dict(sorted(Counter(r["label"] for r in rows).items()))
    assert any(w.startswith("imbalanced") for w in audit["warnings"])

    lengths = [len(r["text"]) for r in rows]
    chars = audit["lengths"]["input_chars"]
    assert (chars["min"], chars["max"]) == (min(lengths), max(lengths))
    assert abs(chars["mean"] - float(np.mean(lengths))) < 1e-9
    assert [chars[f"p{p}"] for p in (50, 90, 99)] == [nearest_rank(lengths, p) for p in (50, 90, 99)]
    words = [len(r["text"].split()) for r in rows]
    assert audit["lengths"]["input_words"]["p50"] == nearest_rank(words, 50)
    assert audit["contamination"] is None


def test_balanced_labels_raise_no_imbalance_warning(db_client: TestClient) -> None:
    rows = [{"id": i, "text": f"distinct text {i}", "label": "ab"[i % 2]} for i in range(40)]
    audit = uploaded(db_client, jsonl(rows))["audit"]
    assert audit["warnings"] == [] and audit["duplicates"]["exact"]["groups"] == 0


def test_contamination_from_a_training_file_and_from_fingerprints(db_client: TestClient) -> None:
    rows = [{"id": f"t{i}", "text": f"Test input {i}, unique", "label": "ab"[i % 2]} for i in range(50)]
    leaked = [rows[i]["text"] for i in (3, 7, 11, 20)]
    training = [{"text": text.lower().replace(",", " ;"), "label": "a"} for text in leaked]
    training += [{"text": f"training only {i}", "label": "b"} for i in range(30)]
    body = uploaded(db_client, jsonl(rows), name="c1", extra_files={"training_file": ("train.jsonl", jsonl(training))})
    contamination = body["audit"]["contamination"]
    assert contamination["contaminated"] == 4 and contamination["training_inputs"] == 34
    assert contamination["example_ids"] == ["t3", "t7", "t11", "t20"]
    assert contamination["share"] == 4 / 50
    assert any("training data" in w for w in body["audit"]["warnings"])

    fingerprints = "\n".join(hashlib.sha256(normalised(t).encode()).hexdigest() for t in leaked[:2] + ["unrelated"])
    body = uploaded(
        db_client, jsonl(rows), name="c2", extra_files={"training_fingerprints": ("fp.txt", fingerprints.encode())}
    )
    assert body["audit"]["contamination"]["contaminated"] == 2
    assert body["audit"]["contamination"]["training_inputs"] == 3

    txt = "\n".join(leaked[:3]).encode()
    body = uploaded(db_client, jsonl(rows), name="c3", extra_files={"training_file": ("train.txt", txt)})
    assert body["audit"]["contamination"]["contaminated"] == 3

    bad = upload(db_client, jsonl(rows), name="c4", extra_files={"training_fingerprints": ("fp.txt", b"abc\n")})
    assert bad.status_code == 422 and bad.json()["errors"][0] == {
        "field": "training_fingerprints",
        "message": "line 1: expected a sha256 fingerprint: 64 hexadecimal characters",
    }


def test_generation_conflicting_references(db_client: TestClient) -> None:
    rows = [
        {"id": 1, "source": "Guten Morgen", "reference": "good morning"},
        {"id": 2, "source": "guten morgen!", "reference": "morning"},
        {"id": 3, "source": "Danke", "references": ["thanks", "thank you"]},
        {"id": 4, "source": "danke", "references": ["thanks", "thank you"]},
    ]
    audit = uploaded(db_client, jsonl(rows), task="generation")["audit"]
    assert audit["duplicates"]["normalized"]["groups"] == 2
    assert audit["duplicates"]["conflicting_targets"] == {"groups": 1, "records": 2, "example_ids": [["1", "2"]]}
    assert audit["label_distribution"] is None
    assert audit["lengths"]["reference_chars"]["max"] == len("good morning")


def test_heartbeats_during_an_upload_with_a_training_sample(db_client: TestClient, monkeypatch: Any) -> None:
    """A slow upload renews its heartbeat between audit queries, from a second connection. On SQLite that
    write waits for the upload's own transaction, so it must come before the transaction writes anything
    (here every beat renews, as on a host slow enough to reach HEARTBEAT_S, and batches are small, so
    beats come between the training fingerprints' batches too)."""
    monkeypatch.setattr(staging, "HEARTBEAT_S", 0.0)
    monkeypatch.setattr(store, "INSERT_BATCH", 8)
    rows = dataset()
    training = [{"text": row["text"], "label": row["label"]} for row in rows[:40]]
    files = {"training_file": ("train.jsonl", jsonl(training))}
    body = uploaded(db_client, jsonl(rows), name="beats", extra_files=files)
    assert body["audit"]["training_sample"]["kept"] == 40
    assert body["audit"]["contamination"]["training_inputs"] > 0
