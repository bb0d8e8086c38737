"""The heldout_bleu / heldout_chrf / heldout_ter `evaluate` modules load offline and equal sacrebleu."""

from __future__ import annotations

import math
from typing import Any

import datasets
import evaluate
import pytest
from sacrebleu.metrics import BLEU, CHRF, TER

from metrics.evaluate_modules import available_modules, module_path

HYPS = ["The cat sat on the mat.", "It wasn't surprising!", "中文测试 好", ""]
REFS = [
    ["The cat is on the mat.", "A cat sat on a mat."],
    ["It was not surprising."],
    ["中文 测试好"],
    ["Nothing here", "empty"],
]
STREAMS: list[list[Any]] = [[r[k] if k < len(r) else None for r in REFS] for k in range(2)]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    # evaluate and datasets read these once at import; set the parsed flags too.
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)


def test_modules_are_discoverable() -> None:
    assert {"heldout_bleu", "heldout_chrf", "heldout_ter"} <= set(available_modules())


@pytest.mark.parametrize(
    ("module", "kwargs", "metric"),
    [
        ("heldout_bleu", {}, BLEU()),
        ("heldout_bleu", {"tokenize": "zh", "lowercase": True}, BLEU(tokenize="zh", lowercase=True)),
        ("heldout_chrf", {}, CHRF()),
        ("heldout_chrf", {"word_order": 2}, CHRF(word_order=2)),
        ("heldout_ter", {}, TER()),
    ],
)
def test_module_equals_sacrebleu_and_keeps_signature(
    module: str, kwargs: dict[str, Any], metric: Any
) -> None:
    loaded = evaluate.load(module_path(module))
    result = loaded.compute(predictions=HYPS, references=REFS, **kwargs)
    expected = metric.corpus_score(HYPS, STREAMS)
    assert math.isclose(result["score"], expected.score, abs_tol=1e-9)
    assert result["signature"] == str(metric.get_signature())
    assert result["name"] == expected.name
    if module == "heldout_bleu":
        assert result["precisions"] == pytest.approx(expected.precisions, abs=1e-9)
        assert (result["sys_len"], result["ref_len"]) == (expected.sys_len, expected.ref_len)


def test_module_accepts_single_string_references_and_intervals() -> None:
    loaded = evaluate.load(module_path("heldout_bleu"))
    refs = [r[0] for r in REFS]
    result = loaded.compute(predictions=HYPS, references=refs, n_resamples=50, sentence_level=True)
    assert math.isclose(result["score"], BLEU().corpus_score(HYPS, [refs]).score, abs_tol=1e-9)
    assert len(result["sentence_scores"]) == len(HYPS)
    assert result["interval"]["low"] <= result["interval"]["high"]
    assert "bs:50" in result["signature"]


def test_combine_keeps_every_signature() -> None:
    combined = evaluate.combine(
        [module_path(name) for name in ("heldout_bleu", "heldout_chrf", "heldout_ter")]
    )
    result = combined.compute(predictions=HYPS, references=REFS)
    for name, metric in (("heldout_bleu", BLEU()), ("heldout_chrf", CHRF()), ("heldout_ter", TER())):
        expected = metric.corpus_score(HYPS, STREAMS)
        assert math.isclose(result[f"{name}_score"], expected.score, abs_tol=1e-9)
        assert result[f"{name}_signature"] == str(metric.get_signature())
