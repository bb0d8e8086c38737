"""Explanations → a self-contained HTML page a person can read: no script, no external resource.

Each input's words are shaded by the sign and size of their attribution (blue for the target, red against
it, the deepest shade at the largest magnitude on the page, so that a text whose attributions are all
small stays pale), with the label, its score, the faithfulness numbers and a legend.
"""

from html import escape

from service.explanations.results import Attribution, Explained, Explanation

METHOD_NAMES = {
    "integrated_gradients": "integrated gradients",
    "attention": "attention (last layer, from the first token, mean over heads)",
    "lime": "LIME",
    "kernel_shap": "kernel SHAP",
    "occlusion": "occlusion (leave one word out)",
}
POSITIVE = (37, 99, 235)
NEGATIVE = (220, 38, 38)
# Self-contained: inline styles only, so a strict policy can forbid everything else.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #111827; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
.meta { color: #4b5563; margin-top: 0; }
.legend { display: flex; align-items: center; gap: 0.6rem; margin: 1rem 0 1.5rem; font-size: 0.9rem; }
.scale { display: flex; }
.scale span { width: 2.2rem; height: 1.2rem; display: inline-block; }
article { border: 1px solid #d1d5db; border-radius: 0.5rem; padding: 1rem 1.2rem; margin-bottom: 1.2rem; }
.summary { display: flex; flex-wrap: wrap; gap: 1.2rem; font-size: 0.95rem; margin-bottom: 0.8rem; }
.summary b { font-weight: 600; }
.text { font-size: 1.25rem; line-height: 2.2rem; }
.word { padding: 0.15rem 0.2rem; border-radius: 0.25rem; }
table { border-collapse: collapse; margin-top: 0.8rem; font-size: 0.9rem; }
td, th { padding: 0.2rem 0.8rem 0.2rem 0; text-align: left; }
.verdict { color: #4b5563; font-size: 0.9rem; }
"""


def _shade(value: float, largest: float) -> str:
    alpha = 0.0 if largest <= 0 else min(1.0, abs(value) / largest) * 0.85
    red, green, blue = POSITIVE if value >= 0 else NEGATIVE
    return f"rgba({red}, {green}, {blue}, {alpha:.3f})"


def _highlighted(text: str, words: list[Attribution], largest: float) -> str:
    parts, cursor = [], 0
    for word in words:
        parts.append(escape(text[cursor : word.start]))
        parts.append(
            f'<span class="word" style="background: {_shade(word.attribution, largest)}" '
            f'title="{word.attribution:+.4f}">{escape(word.text)}</span>'
        )
        cursor = word.end
    parts.append(escape(text[cursor:]))
    return "".join(parts)


def _faithfulness(explanation: Explanation) -> str:
    faith = explanation.faithfulness
    if faith is None:
        return ""
    beats = faith.comprehensiveness > faith.random_comprehensiveness
    verdict = "beats" if beats else "does not beat"
    return (
        "<table><tr><th>faithfulness</th><th></th></tr>"
        f"<tr><td>comprehensiveness</td><td>{faith.comprehensiveness:.3f}</td></tr>"
        f"<tr><td>sufficiency</td><td>{faith.sufficiency:.3f}</td></tr>"
        f"<tr><td>random comprehensiveness</td><td>{faith.random_comprehensiveness:.3f}</td></tr></table>"
        f'<p class="verdict">Deleting the top-attributed words {verdict} deleting random ones '
        "(comprehensiveness: the drop in the target's probability, higher is better; sufficiency: the drop "
        "when only they are kept, lower is better).</p>"
    )


def _label(value: str | list[str]) -> str:
    return escape(", ".join(value) if isinstance(value, list) else value) or "(none)"


def _score(value: float | list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in value) if isinstance(value, list) else f"{value:.3f}"


def _article(text: str, explanation: Explanation, largest: float) -> str:
    delta = explanation.convergence_delta
    summary = [
        f"<span><b>label</b> {_label(explanation.label)}</span>",
        f"<span><b>score</b> {_score(explanation.score)}</span>",
        f"<span><b>explained</b> {escape(explanation.target)}</span>",
    ]
    if delta is not None:
        summary.append(f"<span><b>convergence delta</b> {delta:+.4f}</span>")
    if explanation.truncated:
        summary.append("<span><b>truncated</b>: later words were not seen</span>")
    return (
        f'<article><div class="summary">{"".join(summary)}</div>'
        f'<div class="text">{_highlighted(text, explanation.words, largest)}</div>'
        f"{_faithfulness(explanation)}</article>"
    )


def _legend() -> str:
    steps = [-1.0, -0.66, -0.33, 0.0, 0.33, 0.66, 1.0]
    cells = "".join(f'<span style="background: {_shade(v, 1.0)}"></span>' for v in steps)
    return (
        '<div class="legend"><span>against the label</span>'
        f'<span class="scale">{cells}</span><span>for the label</span>'
        "<span class=\"verdict\">Shade: the word's attribution relative to the largest on this page; "
        "hover a word for its value.</span></div>"
    )


def explain_page(result: Explained, texts: list[str]) -> str:
    """The page for ``result``, whose explanations are of ``texts`` in order."""
    method = METHOD_NAMES.get(result.method, result.method)
    largest = max((abs(w.attribution) for e in result.explanations for w in e.words), default=0.0)
    articles = "".join(_article(text, e, largest) for text, e in zip(texts, result.explanations, strict=True))
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Explanations by {escape(method)}: {escape(result.model)}</title><style>{STYLE}</style></head>"
        f"<body><h1>Why {escape(result.model)} decided as it did</h1>"
        f'<p class="meta">Method: {escape(method)}. Model version {escape(result.model_version[:12])}.</p>'
        f"{_legend()}{articles}</body></html>"
    )
