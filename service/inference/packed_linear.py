"""Linear layers through oneDNN with their weights packed once, for float32 models on the CPU.

PyTorch's CPU build runs ``nn.Linear`` through MKL, which on AMD CPUs takes a generic code path at
about half of what the cores can do: 120 against 270 GFLOP/s per core for MiniLM's layer shapes on
this machine's EPYC. oneDNN with weights reordered once into its blocked layout reaches the
hardware's speed on any x86 CPU; inductor calls the same operator when it freezes a model. The whole
model is checked on a probe input before and after the swap, and the swap is undone on any difference.

The oneDNN operator has no gradient of its own; explanations (integrated gradients) need the gradient with
respect to a layer's input, ``dL/dx = dL/dy · W``, so a packed layer supplies that one, through oneDNN too:
with ``Wᵀ`` packed as well, once, on the first backward pass (only a server that explains pays its memory).
"""

import logging
from collections import Counter
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

log = logging.getLogger("heldout.inference")

# Packing changes only the summation order of each dot product.
RTOL, ATOL = 1e-4, 1e-5
PROBE_TOKENS = 8


class PackedLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` held in oneDNN's layout; inference only, on the CPU it was packed on."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self._dtype = weight.dtype
        self._packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        self._bias = None if bias is None else bias.detach()
        self._packed_transposed: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """A storage-free stand-in with the weight's shape, dtype and device, for models that inspect them
        (T5 casts its activations to ``wo.weight.dtype``); its values are not the weights."""
        return torch.zeros((), dtype=self._dtype).expand(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            result: torch.Tensor = _InputGradient.apply(x, self)
            return result
        return self.linear(x)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, self._bias, "none", [], "")

    def input_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad · W``: a linear layer whose weight is ``Wᵀ`` (reordered from the packed copy; the plain
        weight is not kept). Two threads packing it at once both get the same result."""
        if self._packed_transposed is None:
            transposed = self._packed.to_dense().t().contiguous()
            self._packed_transposed = torch.ops.mkldnn._reorder_linear_weight(transposed, None)
        return torch.ops.mkldnn._linear_pointwise(grad, self._packed_transposed, None, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self._bias is not None}"


class _InputGradient(torch.autograd.Function):
    """``PackedLinear`` with the gradient ``dL/dx = dL/dy · W``; weights and bias are constants."""

    @staticmethod
    def forward(x: torch.Tensor, layer: PackedLinear) -> torch.Tensor:
        return layer.linear(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, PackedLinear], output: torch.Tensor) -> None:
        ctx.layer = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.layer.input_gradient(grad), None


def _as_linear(module: nn.Module, shared: set[int]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Weight (out × in) and bias of a float32 CPU layer computing ``x Wᵀ + b`` whose weight is its own;
    GPT-2's Conv1D stores ``W`` transposed."""
    if not isinstance(module, nn.Linear | Conv1D):
        return None
    weight: torch.Tensor = module.weight.detach()
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.data_ptr() in shared:
        return None
    bias = None if module.bias is None else module.bias.detach()
    return (weight, bias) if isinstance(module, nn.Linear) else (weight.t().contiguous(), bias)


def _probe(model: PreTrainedModel) -> torch.Tensor:
    """Logits for a few fixed tokens: every task heldout serves takes ``input_ids`` and returns logits."""
    config = model.config
    ids = torch.arange(PROBE_TOKENS).remainder(int(config.vocab_size)).unsqueeze(0)
    extra = {"decoder_input_ids": ids[:, :2]} if getattr(config, "is_encoder_decoder", False) else {}
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=ids, **extra).logits
    return logits


class Packing:
    """The layers one packing swapped, so that it can be undone: what the autotuner does when the stock
    layers measure faster. Holding it keeps the plain layers' weights alive; drop it once decided."""

    def __init__(self) -> None:
        self._swapped: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []
        """(parent, attribute, plain layer, packed layer)."""

    @property
    def count(self) -> int:
        return len(self._swapped)

    def swap(self, parent: nn.Module, name: str, plain: nn.Module, packed: nn.Module) -> None:
        setattr(parent, name, packed)
        self._swapped.append((parent, name, plain, packed))

    def use(self, packed: bool) -> None:
        """Puts the packed (or the plain) layers in place; either way both stay alive."""
        for parent, name, plain, packed_layer in self._swapped:
            setattr(parent, name, packed_layer if packed else plain)

    def undo(self) -> None:
        self.use(False)
        self._swapped = []


def pack(model: PreTrainedModel) -> Packing:
    """Swap the float32 CPU linear layers of a transformers ``model`` for packed ones.

    Layers whose weight is shared (an LM head tied to the embeddings) stay plain: packing would keep a
    second copy of the largest matrix in the model.
    """
    if not torch.backends.mkldnn.is_available():
        return Packing()
    uses = Counter(p.data_ptr() for _, p in model.named_parameters(remove_duplicate=False))
    shared = {pointer for pointer, n in uses.items() if n > 1}
    packing = Packing()
    try:
        expected = _probe(model)
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                found = _as_linear(child, shared)
                if found is not None:
                    packing.swap(parent, name, child, PackedLinear(*found))
        same = torch.allclose(_probe(model), expected, rtol=RTOL, atol=ATOL)
        reason = "its outputs differ from the plain model's"
    except Exception as exc:  # an optimisation only: whatever goes wrong, serve the plain model
        same, reason = False, f"{type(exc).__name__}: {exc}"
    if not same:
        packing.undo()
        log.warning("oneDNN packed linear layers not used (%s); serving with plain ones", reason)
    return packing


def pack_linears(model: PreTrainedModel) -> int:
    """``pack``, for good: how many layers were swapped."""
    return pack(model).count
