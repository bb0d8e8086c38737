"""A stored calibration → its reliability diagram, as one self-contained SVG document.

Hand-built, so nothing beyond the standard library draws it: per non-empty bin a bar up to its accuracy,
a tick at its mean confidence, the gap between them shaded, and its count above; the diagonal is perfect
calibration; a strip below shows how many examples each bin holds. No scripts, fonts or external references.
"""

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 520, 440
LEFT, RIGHT, TOP, BOTTOM = 64, 496, 48, 336
STRIP_TOP, STRIP_BOTTOM = 352, 392
BAR = "#4c78a8"
GAP = "#e45756"
TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _x(value: float) -> float:
    return LEFT + value * (RIGHT - LEFT)


def _y(value: float) -> float:
    return BOTTOM - value * (BOTTOM - TOP)


def _f(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _axes() -> list[str]:
    parts = [
        f'<rect x="{LEFT}" y="{TOP}" width="{RIGHT - LEFT}" height="{BOTTOM - TOP}" fill="#ffffff" stroke="#333333"/>'
    ]
    for t in TICKS:
        parts.append(f'<line x1="{_f(_x(t))}" y1="{BOTTOM}" x2="{_f(_x(t))}" y2="{BOTTOM + 4}" stroke="#333333"/>')
        parts.append(f'<line x1="{LEFT - 4}" y1="{_f(_y(t))}" x2="{LEFT}" y2="{_f(_y(t))}" stroke="#333333"/>')
        parts.append(
            f'<text x="{LEFT - 8}" y="{_f(_y(t) + 4)}" text-anchor="end" font-size="11">{t:.1f}</text>'
        )
        parts.append(
            f'<text x="{_f(_x(t))}" y="{STRIP_BOTTOM + 14}" text-anchor="middle" font-size="11">{t:.1f}</text>'
        )
    parts.append(
        f'<line class="diagonal" x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}" stroke="#888888" '
        'stroke-dasharray="6 4"/>'
    )
    parts.append(
        f'<text x="{(LEFT + RIGHT) / 2}" y="{HEIGHT - 14}" text-anchor="middle" font-size="12">'
        "confidence (probability of the predicted label)</text>"
    )
    parts.append(
        f'<text x="16" y="{(TOP + BOTTOM) / 2}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 16 {(TOP + BOTTOM) / 2})">accuracy</text>'
    )
    return parts


def _bin(b: Mapping[str, Any], max_count: int) -> list[str]:
    lower, upper, count = float(b["lower"]), float(b["upper"]), int(b["count"])
    if count == 0 or b["accuracy"] is None or b["confidence"] is None:
        return []
    accuracy, confidence = float(b["accuracy"]), float(b["confidence"])
    x, width = _x(lower) + 1, _x(upper) - _x(lower) - 2
    top, bottom = sorted((_y(accuracy), _y(confidence)))
    strip = (STRIP_BOTTOM - STRIP_TOP) * count / max_count
    title = f"({_f(lower)}, {_f(upper)}]: {count} examples, accuracy {accuracy:.3f}, confidence {confidence:.3f}"
    return [
        f'<g class="bin"><title>{escape(title)}</title>',
        f'<rect class="accuracy" x="{_f(x)}" y="{_f(_y(accuracy))}" width="{_f(width)}" '
        f'height="{_f(BOTTOM - _y(accuracy))}" fill="{BAR}"/>',
        f'<rect class="gap" x="{_f(x)}" y="{_f(top)}" width="{_f(width)}" height="{_f(bottom - top)}" '
        f'fill="{GAP}" fill-opacity="0.35"/>',
        f'<line class="confidence" x1="{_f(x)}" y1="{_f(_y(confidence))}" x2="{_f(x + width)}" '
        f'y2="{_f(_y(confidence))}" stroke="{GAP}" stroke-width="2"/>',
        f'<text class="count" x="{_f(x + width / 2)}" y="{_f(min(top, _y(accuracy)) - 3)}" text-anchor="middle" '
        f'font-size="9">{count}</text>',
        f'<rect class="share" x="{_f(x)}" y="{_f(STRIP_BOTTOM - strip)}" width="{_f(width)}" height="{_f(strip)}" '
        'fill="#999999"/>',
        "</g>",
    ]


def reliability_svg(calibration: Mapping[str, Any], title: str) -> str:
    """The diagram of a calibration as stored (``metrics.calibration.Calibration`` as a dict)."""
    bins: Sequence[Mapping[str, Any]] = calibration["bins"]
    max_count = max((int(b["count"]) for b in bins), default=0) or 1
    heading = f"{title} · ECE {calibration['ece']:.4f} · Brier {calibration['brier']:.4f}"
    body = [
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="28" font-size="14" font-weight="bold">{escape(heading)}</text>',
        *_axes(),
        f'<rect x="{LEFT}" y="{STRIP_TOP}" width="{RIGHT - LEFT}" height="{STRIP_BOTTOM - STRIP_TOP}" fill="none" '
        'stroke="#cccccc"/>',
        *(part for b in bins for part in _bin(b, max_count)),
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">\n'
        f"<title>{escape(f'Reliability diagram: {title}')}</title>\n" + "\n".join(body) + "\n</svg>\n"
    )
