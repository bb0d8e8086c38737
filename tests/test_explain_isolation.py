"""What keeps explanations from disturbing the requests served beside them, and each other: captum's hooks
stay off the served model's own layers, explaining threads run at the lowest CPU priority, and seeded
sampling draws from a stream of its own."""

import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from service.explanations import methods
from service.explanations.classifier_model import ClassifierModel
from service.explanations.random_stream import RandomStream
from service.explanations.tokens import TextTokenizer
from service.inference.loader import load_model
from service.inference.model_dir import inspect_model_dir
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]


class ProbingPasses:
    """Stands in for the lanes: at the start of every pass, runs a batch through the model as the engine
    would on another lane at that moment, and keeps its logits."""

    def __init__(self, model: torch.nn.Module, probe: torch.Tensor) -> None:
        self.model = model
        self.probe = probe
        self.seen: list[torch.Tensor] = []

    def begin(self, *, exclusive: bool = False) -> None:
        with torch.inference_mode():
            self.seen.append(self.model(input_ids=self.probe).logits)

    def release(self) -> None:
        pass


def test_a_batch_run_during_integrated_gradients_passes_sees_no_captum_hook(classifier_dir: Path) -> None:
    loaded = load_model(inspect_model_dir(classifier_dir), torch.device("cpu"), torch.float32)
    probe = torch.tensor([[2, 10, 11, 12, 13, 3]])
    with torch.inference_mode():
        expected = loaded.model(input_ids=probe).logits
    passes = ProbingPasses(loaded.model, probe)
    texts = TextTokenizer(loaded.tokenizer, loaded.max_length)(SENTENCES[:3])
    results = methods.integrated_gradients(ClassifierModel(loaded, passes), texts, [0, 2, 1], n_steps=6)  # type: ignore[arg-type]
    assert len(results) == 3 and len(passes.seen) >= 3
    for logits in passes.seen:
        torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_seeded_streams_draw_the_same_beside_each_other_as_alone() -> None:
    def draws(seed: int) -> list[float]:
        stream = RandomStream(seed)
        return [stream.call(lambda: float(torch.rand(1))) for _ in range(200)]

    alone = {seed: draws(seed) for seed in (1, 2)}
    torch.manual_seed(99)
    outside = float(torch.rand(1))
    together: dict[int, list[float]] = {}
    threads = [threading.Thread(target=lambda s=seed: together.update({s: draws(s)})) for seed in (1, 2)]
    torch.manual_seed(99)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone and alone[1] != alone[2]
    assert float(torch.rand(1)) == outside  # the global generator is left where it was


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread is Linux's")
def test_explaining_threads_run_at_the_lowest_cpu_priority(
    serve: Callable[..., AbstractContextManager[TestClient]], classifier_dir: Path
) -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = niceness()
    with serve(classifier_dir) as client:
        explainer = client.app.state.explainer  # type: ignore[attr-defined]
        assert explainer._threads.submit(niceness).result(10) == 19
        assert niceness() == before  # the other threads keep theirs
