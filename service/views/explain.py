"""Explanations → the JSON contract of /v1/explain."""

from service.explanations.results import Attribution as AttributionResult
from service.explanations.results import Explained
from service.schemas.explain import Attribution, ExplainResponse, Explanation, Faithfulness


def _attributions(items: list[AttributionResult]) -> list[Attribution]:
    return [Attribution(text=a.text, start=a.start, end=a.end, attribution=a.attribution) for a in items]


def explain_response(result: Explained) -> ExplainResponse:
    explanations = [
        Explanation(
            id=e.id,
            label=e.label,
            score=e.score,
            target=e.target,
            tokens=_attributions(e.tokens),
            words=_attributions(e.words),
            convergence_delta=e.convergence_delta,
            faithfulness=None
            if e.faithfulness is None
            else Faithfulness(
                comprehensiveness=e.faithfulness.comprehensiveness,
                sufficiency=e.faithfulness.sufficiency,
                random_comprehensiveness=e.faithfulness.random_comprehensiveness,
            ),
            truncated=e.truncated,
        )
        for e in result.explanations
    ]
    return ExplainResponse(
        model=result.model, model_version=result.model_version, method=result.method, explanations=explanations
    )
