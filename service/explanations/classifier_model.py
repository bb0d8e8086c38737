"""A served classifier as captum's forward function: token ids to label probabilities, one held pass a call.

Attributions explain the softmax (multi-label: sigmoid) probability of the target label. Passes are sized in
tokens, so long inputs get fewer rows a pass and memory stays bounded for the backward passes of
integrated gradients.
"""

from collections.abc import Callable, Sequence

import torch
from torch import nn

from service.explanations.passes import Passes
from service.explanations.tokens import TokenizedText
from service.inference.loader import LoadedModel
from service.tasks import ModelTask

# Tokens in one forward (and backward) pass: a CPU lane's pass stays well under a second for MiniLM, so a
# prediction queued behind it waits little; a GPU wants wide passes.
CPU_PASS_TOKENS = 1024
GPU_PASS_TOKENS = 16_384


class WordEmbeddings(nn.Module):
    """The model's input word embeddings (``get_input_embeddings()``) behind a module of their own.

    captum hooks the layer it attributes to; hooking this wrapper instead of the model's own embedding layer
    keeps the hooks out of the batches the engine runs through the same model meanwhile.
    """

    def __init__(self, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded: torch.Tensor = self.embeddings(input_ids)
        return embedded


def pass_tokens(loaded: LoadedModel) -> int:
    return CPU_PASS_TOKENS if loaded.device.type == "cpu" else GPU_PASS_TOKENS


class ExplainedModel:
    """What every explained model has: its passes on the engine's lanes, the pad id perturbations use, the
    hookable embedding layer, and how many rows a pass takes."""

    def __init__(self, loaded: LoadedModel, passes: Passes) -> None:
        self.loaded = loaded
        self.passes = passes
        self.pad_id = loaded.token_ids.pad
        self.embeddings = WordEmbeddings(loaded.model.get_input_embeddings())
        self._pass_tokens = pass_tokens(loaded)

    def pass_rows(self, length: int) -> int:
        """Rows of ``length`` tokens that one pass takes."""
        return max(1, self._pass_tokens // max(1, length))


class ClassifierModel(ExplainedModel):

    def probabilities(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Every label's probability for each row (N × labels): one pass, under the lanes it holds."""
        self.passes.begin()
        device = self.loaded.device
        embedded = self.embeddings(input_ids.to(device))
        logits = self.loaded.model(inputs_embeds=embedded, attention_mask=attention_mask.to(device)).logits.float()
        if self.loaded.task is ModelTask.multi_label:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and their attention mask."""
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask

    def row_probabilities(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Probabilities of token rows of any lengths, in as few passes as their tokens allow."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out = torch.empty((len(rows), len(self.loaded.labels)))
        start = 0
        with torch.no_grad():
            while start < len(order):
                stop = start + 1
                while stop < len(order) and stop - start < self.pass_rows(len(rows[order[stop]])):
                    stop += 1
                chunk = order[start:stop]
                ids, mask = self.pad([rows[i] for i in chunk])
                out[chunk] = self.probabilities(ids, mask).cpu()
                start = stop
        return out

    def content_forward(self, text: TokenizedText) -> Callable[[torch.Tensor], torch.Tensor]:
        """captum's forward function over ``text``'s non-special tokens (N × content): the special tokens are
        put back around them, and every position is attended to, pad replacements included."""
        template = torch.tensor([text.ids], dtype=torch.long)
        positions = torch.tensor(text.content, dtype=torch.long)

        def forward(content: torch.Tensor) -> torch.Tensor:
            ids = template.expand(len(content), -1).clone()
            ids[:, positions] = content.long()
            with torch.no_grad():
                return self.probabilities(ids, torch.ones_like(ids)).cpu()

        return forward
