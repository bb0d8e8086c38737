"""Expected calibration error by its definition, in plain loops: the oracle the calibration tests share."""

from collections.abc import Sequence

N_BINS = 15


def ece_by_definition(
    confidences: Sequence[float], correct: Sequence[bool]
) -> tuple[float, list[tuple[int, float | None, float | None]]]:
    """15 bins (lo, hi], 0 in the first; ECE = sum (n_b / n) |accuracy_b - confidence_b|; and per bin
    (count, mean confidence, accuracy)."""
    edges = [b / N_BINS for b in range(N_BINS + 1)]
    members: list[list[tuple[float, bool]]] = [[] for _ in range(N_BINS)]
    for confidence, ok in zip(confidences, correct, strict=True):
        b = 0 if confidence == 0 else next(b for b in range(N_BINS) if edges[b] < confidence <= edges[b + 1])
        members[b].append((float(confidence), bool(ok)))
    n = len(confidences)
    ece, bins = 0.0, []
    for items in members:
        if not items:
            bins.append((0, None, None))
            continue
        confidence = sum(c for c, _ in items) / len(items)
        accuracy = sum(ok for _, ok in items) / len(items)
        ece += len(items) / n * abs(accuracy - confidence)
        bins.append((len(items), confidence, accuracy))
    return ece, bins
