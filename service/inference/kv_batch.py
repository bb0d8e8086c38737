"""The running batch of a continuous decoder: rows join and leave between decoding steps.

Every row keeps its own columns of the KV cache. Rows are left-padded to the batch's width, as ``generate``
pads a static batch, and each row's positions come from its own attention mask, so a row decodes as it
would in a static batch. Joining pads the narrower side's cache on the left; leaving selects the remaining
rows and drops the leading columns no row uses any more, so the width stays that of the longest row.

Only caches made of plain ``DynamicLayer``s can be spliced like this; ``supports`` says whether a model's
are (sliding-window and quantized caches are not).
"""

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def decoding_model(model: Any) -> Any:
    """The module to call step by step: an unmerged PEFT wrapper's base model, into whose layers peft has
    injected the LoRA weights (its own ``forward`` hides the cache arguments)."""
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


def cache_argument(model: Any) -> str | None:
    """The name ``forward`` takes its cache under: ``cache`` since transformers 5.x deprecated
    ``past_key_values``. None where it takes neither or no ``logits_to_keep``: such a model keeps the
    static ``generate`` path."""
    parameters = inspect.signature(model.forward).parameters
    if "logits_to_keep" not in parameters:
        return None
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _layers(cache: DynamicCache) -> list[Any]:
    """The cache's layers, loosely typed: splicing is only done where ``supported`` found plain
    ``DynamicLayer``s, whose keys and values are tensors."""
    return list(cache.layers)


@dataclass
class KVBatch:
    """Rows' attention masks (rows × width) and their KV cache; the model and its cache argument's name."""

    model: Any
    cache_name: str
    mask: torch.Tensor
    cache: DynamicCache

    @classmethod
    def prefill(
        cls, model: Any, cache_name: str, input_ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple["KVBatch", torch.Tensor]:
        """A new batch of left-padded prompts, and the logits of each row's next token."""
        cache = DynamicCache(config=model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = cls._forward(model, cache_name, cache, input_ids, mask, positions)
        return cls(model, cache_name, mask, cache), logits

    @property
    def supported(self) -> bool:
        """Whether every cache layer is a plain ``DynamicLayer``, the kind ``join`` and ``keep`` can splice."""
        return all(type(layer) is DynamicLayer for layer in self.cache.layers)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feeds each row its latest token; returns the logits of the token after it."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.size, 1)], dim=1)
        positions = self.mask.sum(-1, keepdim=True) - 1
        return self._forward(self.model, self.cache_name, self.cache, tokens[:, None], self.mask, positions)

    def join(self, other: "KVBatch") -> None:
        """Appends ``other``'s rows after this batch's, padding the narrower on the left."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        mine, theirs = width - self.mask.shape[1], width - other.mask.shape[1]
        self.mask = torch.cat([_pad_left(self.mask, mine, 1), _pad_left(other.mask, theirs, 1)])
        for layer, joining in zip(_layers(self.cache), _layers(other.cache), strict=True):
            layer.keys = torch.cat([_pad_left(layer.keys, mine, 2), _pad_left(joining.keys, theirs, 2)])
            layer.values = torch.cat([_pad_left(layer.values, mine, 2), _pad_left(joining.values, theirs, 2)])

    def keep(self, rows: list[int]) -> None:
        """Keeps only ``rows`` (indices, in order), then drops leading columns that are padding in all of them."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else mask.shape[1]
        self.mask = mask[:, first:]
        for layer in _layers(self.cache):
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]

    @staticmethod
    def _forward(
        model: Any,
        cache_name: str,
        cache: DynamicCache,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        arguments = {cache_name: cache, "attention_mask": mask, "position_ids": positions}
        out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **arguments)
        return out.logits[:, -1].float()
