"""The five attribution methods over a served classifier, each one captum call as documented in README.

Every method returns, for each input, one attribution per non-special token (in ``TokenizedText.content``
order). Word-level methods (LIME, kernel SHAP, occlusion) attribute words; each word's attribution is split
evenly over its tokens, so a word's tokens sum to it again.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import FeatureAblation, KernelShap, LayerIntegratedGradients, Lime
from captum.attr._core.lime import default_perturb_func

from service.explanations.classifier_model import ClassifierModel
from service.explanations.random_stream import RandomStream
from service.explanations.tokens import TokenizedText

# LIME's own text defaults (lime.lime_text): cosine distance of the word-presence vector to the input's,
# times 100, in an exponential kernel of width 25, and a ridge regression with alpha 1.
LIME_KERNEL_WIDTH = 25.0
LIME_RIDGE_ALPHA = 1.0
# A pass is filled to at least (STEPS_PER_PASS - 1) / STEPS_PER_PASS of its rows.
STEPS_PER_PASS = 4


@dataclass(frozen=True)
class Attributed:
    tokens: list[float]
    """One attribution per non-special token."""
    convergence_delta: float | None = None


def integrated_gradients(
    model: ClassifierModel, texts: Sequence[TokenizedText], targets: Sequence[int], n_steps: int
) -> list[Attributed]:
    """captum's LayerIntegratedGradients over the input word embeddings, from the baseline that replaces every
    non-special token with pad (special tokens and the attention mask kept); a token's attribution is the sum
    over the hidden dimension. Inputs of similar lengths share passes: the rows of a pass are steps of
    several inputs."""
    results: list[Attributed | None] = [None] * len(texts)
    for group in _length_groups(model, texts):
        ids, mask = model.pad([texts[i].ids for i in group])
        baseline = ids.clone()
        for row, i in enumerate(group):
            baseline[row, texts[i].content] = model.pad_id
        explainer = LayerIntegratedGradients(model.probabilities, model.embeddings)
        attributions, deltas = explainer.attribute(
            ids,
            baselines=baseline,
            additional_forward_args=(mask,),
            target=[targets[i] for i in group],
            n_steps=n_steps,
            internal_batch_size=model.pass_rows(ids.shape[1]),
            return_convergence_delta=True,
        )
        per_token = attributions.sum(-1).detach().float().cpu()
        for row, i in enumerate(group):
            tokens = per_token[row, texts[i].content].tolist()
            results[i] = Attributed(tokens, float(deltas[row]))
    model.passes.release()
    return [result for result in results if result is not None]


def _length_groups(model: ClassifierModel, texts: Sequence[TokenizedText]) -> list[list[int]]:
    """Indices by length, grouped so that a pass holds at least STEPS_PER_PASS steps of every input of a group
    (captum puts whole steps of every input in a pass: with one step a pass, most of its rows stay unused)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i].ids))
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < model.pass_rows(len(texts[i].ids)) // STEPS_PER_PASS:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def attention(model: ClassifierModel, texts: Sequence[TokenizedText]) -> list[Attributed]:
    """The last layer's attention from the first token to each token, averaged over heads.

    The model runs with eager attention for this pass (the fused kernels return no weights), so the pass holds
    every lane: no other batch runs through the model while its attention implementation is switched.
    """
    loaded = model.loaded
    results = []
    for text in texts:
        ids, mask = model.pad([text.ids])
        model.passes.begin(exclusive=True)
        implementation = loaded.model.config._attn_implementation
        try:
            loaded.model.set_attn_implementation("eager")
            with torch.inference_mode():
                out = loaded.model(
                    input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device), output_attentions=True
                )
        finally:
            loaded.model.set_attn_implementation(implementation)
        weights = out.attentions[-1][0, :, 0, :].float().mean(0).cpu()
        results.append(Attributed(weights[text.content].tolist()))
    model.passes.release()
    return results


def lime(model: ClassifierModel, text: TokenizedText, target: int, n_samples: int, seed: int) -> Attributed:
    """captum's Lime over words, with LIME's text kernel and ridge regression, sampled from ``seed``."""
    stream = RandomStream(seed)

    def perturb(original: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return stream.call(lambda: default_perturb_func(original, **kwargs))

    explainer = Lime(
        model.content_forward(text),
        interpretable_model=SkLearnRidge(alpha=LIME_RIDGE_ALPHA),
        similarity_func=_lime_text_kernel,
        perturb_func=perturb,
    )
    return _word_level(
        model, text, target, lambda **kw: explainer.attribute(n_samples=n_samples, return_input_shape=False, **kw)
    )


def _lime_text_kernel(_original: Any, _perturbed: Any, interpretable: torch.Tensor, **_: Any) -> torch.Tensor:
    present = interpretable.float().flatten()
    cosine = present.sum() / (math.sqrt(present.numel()) * present.norm()) if present.any() else torch.tensor(0.0)
    distance = (1 - cosine) * 100
    return torch.sqrt(torch.exp(-(distance**2) / LIME_KERNEL_WIDTH**2))


class _SeededKernelShap(KernelShap):
    """captum's KernelShap with its sampler drawing from a seeded stream."""

    def __init__(self, forward_func: Callable[..., torch.Tensor], stream: RandomStream) -> None:
        super().__init__(forward_func)
        self._stream = stream

    def kernel_shap_perturb_generator(self, original_inp: Any, **kwargs: object) -> Any:
        yield from self._stream.iterate(super().kernel_shap_perturb_generator(original_inp, **kwargs))


def kernel_shap(model: ClassifierModel, text: TokenizedText, target: int, n_samples: int, seed: int) -> Attributed:
    """captum's KernelShap over words, sampled from ``seed``.

    A one-word text's Shapley value is exactly f(x) − f(baseline), which leaving the word out measures;
    captum's sampler cannot draw coalitions of a single feature (its kernel weights come out NaN)."""
    if len(text.features()) < 2:
        return occlusion(model, text, target)
    explainer = _SeededKernelShap(model.content_forward(text), RandomStream(seed))
    return _word_level(
        model, text, target, lambda **kw: explainer.attribute(n_samples=n_samples, return_input_shape=False, **kw)
    )


def occlusion(model: ClassifierModel, text: TokenizedText, target: int) -> Attributed:
    """Leave-one-word-out: captum's FeatureAblation with one feature per word, its tokens replaced by pad."""
    explainer = FeatureAblation(model.content_forward(text))

    def attribute(**kw: Any) -> torch.Tensor:
        per_token: torch.Tensor = explainer.attribute(**kw)
        mask = kw["feature_mask"][0]
        features = int(mask.max()) + 1
        first = [int((mask == f).nonzero()[0]) for f in range(features)]
        return per_token[0, first].unsqueeze(0)

    return _word_level(model, text, target, attribute)


def _word_level(
    model: ClassifierModel, text: TokenizedText, target: int, attribute: Callable[..., torch.Tensor]
) -> Attributed:
    """Run a word-level captum method on ``text``'s content tokens; ``attribute`` returns one coefficient per
    feature (1 × features). Words are the features, numbered in order among the words that have tokens; each
    word's coefficient is split evenly over its tokens."""
    content = text.content
    feature_of = {word: f for f, word in enumerate(text.features())}
    features = [feature_of[text.word_of[p]] for p in content]
    ids = torch.tensor([[text.ids[p] for p in content]], dtype=torch.long)
    coefficients = attribute(
        inputs=ids,
        baselines=torch.full_like(ids, model.pad_id),
        target=target,
        feature_mask=torch.tensor([features], dtype=torch.long),
        perturbations_per_eval=model.pass_rows(len(text.ids)),
    )
    model.passes.release()
    return split_over_tokens(features, coefficients.reshape(-1).detach().float().tolist())


def split_over_tokens(features: list[int], per_feature: list[float]) -> Attributed:
    """Each token's share of its feature's (word's) attribution, ``features`` naming each token's."""
    sizes = [features.count(f) for f in range(len(per_feature))]
    return Attributed([per_feature[f] / sizes[f] for f in features])
