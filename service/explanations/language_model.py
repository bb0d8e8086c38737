"""A served causal LM explained: which prompt tokens its continuation's log-probability rests on.

The attribution target is the continuation's total log-probability given the prompt, the continuation's own
tokens fixed (teacher forcing), as captum's ``LLMGradientAttribution`` and ``LLMAttribution`` define it
(summed over the continuation's tokens). Both are linear in the target token by token, so one captum call
on the total gives their sums: integrated gradients in ``n_steps`` batched passes rather than one
integration per continuation token, and occlusion in batched passes rather than one forward per word.
"""

from collections.abc import Callable

import torch
from captum.attr import FeatureAblation, LayerIntegratedGradients

from service.explanations.classifier_model import ExplainedModel
from service.explanations.methods import Attributed, split_over_tokens
from service.explanations.tokens import TokenizedText


class LanguageModel(ExplainedModel):
    def log_probability(self, prompts: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
        """log p(continuation | prompt) for each row of ``prompts`` (N × prompt length): one held pass. Only
        the prompt goes through ``embeddings`` (the layer captum hooks); the continuation's embeddings are
        the model's own."""
        self.passes.begin()
        device = self.loaded.device
        rows = len(prompts)
        inner = self.embeddings.embeddings
        embedded = torch.cat(
            [self.embeddings(prompts.to(device)), inner(continuation.to(device)).expand(rows, -1, -1)], dim=1
        )
        logits = self.loaded.model(inputs_embeds=embedded).logits.float()
        start = prompts.shape[1] - 1
        predicted = torch.log_softmax(logits[:, start : start + len(continuation)], dim=-1)
        chosen = continuation.to(device).expand(rows, -1).unsqueeze(-1)
        return predicted.gather(-1, chosen).squeeze(-1).sum(-1)

    def forward_for(self, continuation: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda prompts: self.log_probability(prompts, continuation)


def integrated_gradients(
    model: LanguageModel, text: TokenizedText, continuation: list[int], n_steps: int
) -> Attributed:
    """captum's LayerIntegratedGradients over the prompt's word embeddings, from the pad-token baseline
    (special tokens kept), of the continuation's log-probability."""
    ids = torch.tensor([text.ids], dtype=torch.long)
    baseline = ids.clone()
    baseline[0, text.content] = model.pad_id
    target = torch.tensor(continuation, dtype=torch.long)
    explainer = LayerIntegratedGradients(model.forward_for(target), model.embeddings)
    attributions, delta = explainer.attribute(
        ids,
        baselines=baseline,
        n_steps=n_steps,
        internal_batch_size=model.pass_rows(len(text.ids) + len(continuation)),
        return_convergence_delta=True,
    )
    model.passes.release()
    per_token = attributions.sum(-1)[0].detach().float().cpu()
    return Attributed(per_token[text.content].tolist(), float(delta[0]))


def occlusion(model: LanguageModel, text: TokenizedText, continuation: list[int]) -> Attributed:
    """Leave one word out: captum's FeatureAblation, one feature per word, its tokens replaced by pad."""
    target = torch.tensor(continuation, dtype=torch.long)
    content = text.content
    feature_of = {word: f for f, word in enumerate(text.features())}
    features = [feature_of[text.word_of[p]] for p in content]
    template = torch.tensor([text.ids], dtype=torch.long)
    positions = torch.tensor(content, dtype=torch.long)

    def forward(tokens: torch.Tensor) -> torch.Tensor:
        ids = template.expand(len(tokens), -1).clone()
        ids[:, positions] = tokens.long()
        with torch.no_grad():
            return model.log_probability(ids, target).cpu()

    ids = template[:, positions]
    mask = torch.tensor([features], dtype=torch.long)
    per_token = FeatureAblation(forward).attribute(
        ids,
        baselines=torch.full_like(ids, model.pad_id),
        feature_mask=mask,
        perturbations_per_eval=model.pass_rows(len(text.ids) + len(continuation)),
    )
    model.passes.release()
    first = [int((mask[0] == f).nonzero()[0]) for f in range(len(feature_of))]
    return split_over_tokens(features, per_token[0, first].tolist())
