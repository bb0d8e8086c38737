"""oneDNN packed linear layers: the same outputs as the model transformers loads, tied heads left alone."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn
from transformers.pytorch_utils import Conv1D

from service.inference.encoding import TextEncoder
from service.inference.loader import LoadedModel, load_model
from service.inference.model_dir import inspect_model_dir
from service.inference.packed_linear import PackedLinear, pack_linears
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN (mkldnn) backend"
)


def load(path: Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    return load_model(inspect_model_dir(path), torch.device("cpu"), dtype)


def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def batch(loaded: LoadedModel, texts: list[str]) -> dict[str, torch.Tensor]:
    encoder = TextEncoder(loaded.tokenizer, loaded.token_ids.pad)
    input_ids, attention_mask = encoder.pad([e.ids for e in encoder.encode(texts, loaded.max_length)])
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_a_packed_layer_equals_linear_on_any_leading_shape(rows: int) -> None:
    torch.manual_seed(rows)
    plain = nn.Linear(48, 80)
    packed = PackedLinear(plain.weight, plain.bias)
    no_bias = PackedLinear(plain.weight, None)
    for x in (torch.randn(rows, 48), torch.randn(2, rows, 48), torch.randn(rows, 96)[:, ::2]):
        with torch.inference_mode():
            torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(no_bias(x), x @ plain.weight.t(), rtol=1e-5, atol=1e-5)


def test_packed_classifier_gives_the_same_logits(classifier_dir: Path) -> None:
    plain, fast = load(classifier_dir), load(classifier_dir)
    linears = count(plain.model, nn.Linear)
    assert pack_linears(fast.model) == linears > 0
    assert count(fast.model, nn.Linear) == 0 and count(fast.model, PackedLinear) == linears
    inputs = batch(plain, SENTENCES)
    with torch.inference_mode():
        torch.testing.assert_close(fast.model(**inputs).logits, plain.model(**inputs).logits, rtol=1e-5, atol=1e-5)


def test_packed_gpt2_generates_the_same_tokens_and_keeps_its_tied_head(copy_lm_dir: Path) -> None:
    plain, fast = load(copy_lm_dir), load(copy_lm_dir)
    conv1d = count(plain.model, Conv1D)
    assert pack_linears(fast.model) == conv1d > 0
    assert fast.model.lm_head.weight.data_ptr() == fast.model.transformer.wte.weight.data_ptr()
    assert isinstance(fast.model.lm_head, nn.Linear)
    prompt = torch.tensor([plain.tokenizer.encode("a b c d =").ids])
    with torch.inference_mode():
        torch.testing.assert_close(fast.model(prompt).logits, plain.model(prompt).logits, rtol=1e-5, atol=1e-5)
        options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": plain.token_ids.pad}
        assert fast.model.generate(prompt, **options).tolist() == plain.model.generate(prompt, **options).tolist()


def test_packed_t5_without_biases_gives_the_same_logits(seq2seq_dir: Path) -> None:
    plain, fast = load(seq2seq_dir), load(seq2seq_dir)
    assert pack_linears(fast.model) == count(plain.model, nn.Linear) - 1  # all but the tied lm_head
    inputs = batch(plain, SENTENCES[:3])
    start = torch.full((3, 1), plain.model.config.decoder_start_token_id)
    with torch.inference_mode():
        torch.testing.assert_close(
            fast.model(**inputs, decoder_input_ids=start).logits,
            plain.model(**inputs, decoder_input_ids=start).logits,
            rtol=1e-5,
            atol=1e-5,
        )


def test_only_float32_layers_are_packed(classifier_dir: Path) -> None:
    assert pack_linears(load(classifier_dir, torch.bfloat16).model) == 0


def test_serving_packs_by_default_and_the_setting_turns_it_off(classifier_dir: Path, serve: ServeFactory) -> None:
    for enabled in (True, False):
        with serve(classifier_dir, packed_linear=enabled) as client:
            model = client.app.state.inference.loaded.model
            assert (count(model, PackedLinear) > 0) is enabled
            assert (count(model, nn.Linear) == 0) is enabled


def test_a_swap_that_changes_the_outputs_is_undone(
    classifier_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load(classifier_dir)
    linears = count(loaded.model, nn.Linear)
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: torch.zeros(*x.shape[:-1], self.out_features))
    assert pack_linears(loaded.model) == 0
    assert count(loaded.model, nn.Linear) == linears and count(loaded.model, PackedLinear) == 0
    assert "outputs differ" in caplog.text


def test_an_operator_that_fails_leaves_the_model_plain(classifier_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(classifier_dir)

    def missing(self: PackedLinear, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(PackedLinear, "forward", missing)
    assert pack_linears(loaded.model) == 0
    assert count(loaded.model, PackedLinear) == 0
    inputs = batch(loaded, SENTENCES[:2])
    with torch.inference_mode():
        assert loaded.model(**inputs).logits.shape == (2, 3)


def test_packed_layers_pass_the_same_input_gradients(classifier_dir: Path, copy_lm_dir: Path) -> None:
    """What integrated gradients needs: d(output)/d(input embeddings) through BERT's Linear and GPT-2's Conv1D."""
    for path in (classifier_dir, copy_lm_dir):
        plain, packed = load(path), load(path)
        assert pack_linears(packed.model) > 0
        inputs = batch(plain, SENTENCES[:3])
        gradients = []
        for loaded in (plain, packed):
            embedded = loaded.model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_()
            logits = loaded.model(inputs_embeds=embedded, attention_mask=inputs["attention_mask"]).logits
            (gradient,) = torch.autograd.grad(logits.square().sum(), embedded)
            gradients.append(gradient)
        # Float noise scales with the largest gradient: packing reorders each dot product's sum, and where
        # terms cancel, a small gradient keeps the rounding of the large terms it came from.
        largest = float(gradients[0].abs().max())
        assert largest > 0
        torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-4 * largest)
