"""Explanations computed independently of heldout: the model and tokenizer loaded by transformers, captum
called directly as the README defines each method, one sentence per call."""

import bisect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import KernelShap, LayerIntegratedGradients, Lime
from transformers import AutoModelForSequenceClassification, AutoTokenizer


@dataclass
class Encoded:
    ids: torch.Tensor
    """1 × length, special tokens included."""
    special: torch.Tensor
    """1 × length: which tokens are special."""
    word_of: list[int]
    """The whitespace-word index of each non-special token."""


class Reference:
    """The saved model in float32 on the CPU, plain ``nn.Linear`` layers, its own tokenizer."""

    def __init__(self, model_dir: Path, attention: str = "sdpa") -> None:
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, local_files_only=True, attn_implementation=attention
        ).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.pad = int(self.tokenizer.pad_token_id)
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def encode(self, text: str) -> Encoded:
        enc = self.tokenizer(text, return_tensors="pt", return_special_tokens_mask=True, return_offsets_mapping=True)
        special = enc["special_tokens_mask"].bool()
        starts = [m.start() for m in re.finditer(r"\S+", text)]
        word_of = [
            bisect.bisect_right(starts, int(start)) - 1
            for (start, _), is_special in zip(enc["offset_mapping"][0].tolist(), special[0].tolist(), strict=True)
            if not is_special
        ]
        return Encoded(enc["input_ids"], special, word_of)

    def probabilities(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(ids) if mask is None else mask
        return torch.softmax(self.model(input_ids=ids, attention_mask=mask).logits, dim=-1)

    def integrated_gradients(self, text: str, target: int, n_steps: int = 50) -> tuple[list[float], float, float]:
        """Token attributions (non-special tokens), the convergence delta and p(baseline)."""
        enc = self.encode(text)
        baseline = torch.where(enc.special, enc.ids, torch.full_like(enc.ids, self.pad))
        mask = torch.ones_like(enc.ids)
        explainer = LayerIntegratedGradients(self.probabilities, self.model.get_input_embeddings())
        attributions, delta = explainer.attribute(
            enc.ids,
            baselines=baseline,
            additional_forward_args=(mask,),
            target=target,
            n_steps=n_steps,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            p_baseline = float(self.probabilities(baseline)[0, target])
        tokens = attributions.sum(-1)[0][~enc.special[0]].tolist()
        return tokens, float(delta[0]), p_baseline

    def _content_forward(self, enc: Encoded) -> Any:
        positions = (~enc.special[0]).nonzero().flatten()

        def forward(content: torch.Tensor) -> torch.Tensor:
            ids = enc.ids.expand(len(content), -1).clone()
            ids[:, positions] = content.long()
            with torch.no_grad():
                return self.probabilities(ids)

        return forward, enc.ids[:, positions]

    def _word_inputs(self, text: str) -> tuple[Any, dict[str, Any], list[int]]:
        enc = self.encode(text)
        forward, content = self._content_forward(enc)
        words = sorted(set(enc.word_of))
        features = torch.tensor([[words.index(w) for w in enc.word_of]])
        kwargs = {"inputs": content, "baselines": torch.full_like(content, self.pad), "feature_mask": features}
        return forward, kwargs, words

    def kernel_shap(self, text: str, target: int, n_samples: int, seed: int) -> dict[int, float]:
        """Each word's (by index) coefficient; captum's sampler seeded through torch's global generator."""
        forward, kwargs, words = self._word_inputs(text)
        torch.manual_seed(seed)
        coefs = KernelShap(forward).attribute(target=target, n_samples=n_samples, return_input_shape=False, **kwargs)
        return dict(zip(words, coefs.flatten().tolist(), strict=True))

    def lime(self, text: str, target: int, n_samples: int, seed: int) -> dict[int, float]:
        """LIME's text kernel (cosine distance × 100, width 25) and ridge (alpha 1) in captum's Lime."""

        def kernel(_original: Any, _perturbed: Any, sample: torch.Tensor, **_: Any) -> torch.Tensor:
            z = sample.float().flatten()
            cosine = float(z.sum()) / (math.sqrt(len(z)) * float(z.norm())) if z.any() else 0.0
            return torch.tensor(math.sqrt(math.exp(-(((1 - cosine) * 100) ** 2) / 25.0**2)))

        forward, kwargs, words = self._word_inputs(text)
        torch.manual_seed(seed)
        explainer = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=kernel)
        coefs = explainer.attribute(target=target, n_samples=n_samples, return_input_shape=False, **kwargs)
        return dict(zip(words, coefs.flatten().tolist(), strict=True))

    def occlusion(self, text: str, target: int) -> dict[int, float]:
        """p(x) minus p(x with one word's tokens replaced by pad), by direct forward passes."""
        enc = self.encode(text)
        positions = (~enc.special[0]).nonzero().flatten().tolist()
        with torch.no_grad():
            full = float(self.probabilities(enc.ids)[0, target])
            drops = {}
            for word in sorted(set(enc.word_of)):
                ids = enc.ids.clone()
                for position, w in zip(positions, enc.word_of, strict=True):
                    if w == word:
                        ids[0, position] = self.pad
                drops[word] = full - float(self.probabilities(ids)[0, target])
        return drops

    def last_layer_attention(self, text: str) -> list[float]:
        """From the first token, averaged over heads, to each non-special token (needs ``attention="eager"``)."""
        enc = self.encode(text)
        with torch.no_grad():
            out = self.model(input_ids=enc.ids, output_attentions=True)
        return out.attentions[-1][0, :, 0, :].mean(0)[~enc.special[0]].tolist()
