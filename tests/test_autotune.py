"""The serving choices made at start: the faster candidate is kept, a setting forces its choice, and the
choices are exported."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from service.inference import autotune
from service.inference.autotune import plan_serving
from service.inference.loader import LoadedModel, load_model
from service.inference.model_dir import inspect_model_dir
from service.inference.packed_linear import PackedLinear
from service.settings import Settings
from tests.conftest import auth
from tests.prometheus_text import samples

pytest_plugins = ["tests.inference_fixtures"]
UNIT = 1e-4


def loaded(path: Path) -> LoadedModel:
    return load_model(inspect_model_dir(path), torch.device("cpu"), torch.float32)


def packed_layers(model: torch.nn.Module) -> int:
    return sum(isinstance(module, PackedLinear) for module in model.modules())


def timings(monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module, packed: float, stock: float, wide: float,
            narrow: float, batches: dict[int, float], lone: dict[int, float]) -> None:  # fmt: skip
    """Replaces the probe's clock with these costs, in tenths of a millisecond per example: the kernels' by
    which layers are in place (``plan_serving`` times them first, in turns), then the batch sizes', and a
    lone example's by its number of threads."""
    calls: list[int] = []

    def per_example(_: Any, size: int, threads: int) -> float:
        calls.append(size)
        if len(calls) <= 2 * autotune.REPEATS:
            return UNIT * (packed if packed_layers(model) else stock)
        return UNIT * batches[size]

    monkeypatch.setattr(autotune._Probe, "per_example", per_example)
    monkeypatch.setattr(autotune._Probe, "lanes", lambda _, lanes, threads: UNIT * (wide if lanes == 1 else narrow))
    monkeypatch.setattr(autotune._Probe, "lone", lambda _, threads: UNIT * lone[threads])


@pytest.mark.parametrize(
    ("packed", "stock", "wide", "narrow", "batches", "lone", "expected"),
    [
        (1.0, 2.0, 1.0, 0.5, {8: 1.0, 16: 0.97, 32: 0.96}, {1: 5.2, 2: 7.2}, (True, 2, 8, False)),
        (1.0, 2.0, 1.0, 0.5, {8: 1.0, 16: 0.97, 32: 0.96}, {1: 5.2, 2: 5.3}, (True, 2, 8, True)),
        (2.0, 1.0, 0.5, 1.0, {8: 1.2, 16: 1.0, 32: 0.99}, {1: 5.2, 2: 7.2}, (False, 1, 16, True)),
        (1.0, 1.02, 1.0, 0.98, {8: 2.0, 16: 1.5, 32: 1.0}, {1: 5.2, 2: 4.0}, (True, 1, 32, True)),
    ],
)
def test_the_faster_candidate_is_kept(
    monkeypatch: pytest.MonkeyPatch,
    classifier_dir: Path,
    make_settings: Callable[..., Settings],
    packed: float,
    stock: float,
    wide: float,
    narrow: float,
    batches: dict[int, float],
    lone: dict[int, float],
    expected: tuple[bool, int, int, bool],
) -> None:
    model = loaded(classifier_dir)
    timings(monkeypatch, model.model, packed, stock, wide, narrow, batches, lone)
    plan = plan_serving(model, make_settings(model_path=classifier_dir, torch_threads=2), 2)
    assert (plan.packed_linear, plan.lanes, plan.max_batch_size, plan.wide_lone_batches) == expected
    # With one lane a lone batch has every thread anyway: nothing to measure.
    lone_by = "measured" if plan.lanes == 2 else "default"
    assert plan.chosen_by == {
        "packed_linear": "measured", "lanes": "measured", "max_batch_size": "measured", "wide_lone_batches": lone_by
    }
    assert (packed_layers(model.model) > 0) is expected[0]
    assert plan.timings_ms["packed"] == pytest.approx(packed * UNIT * 1000)
    assert plan.timings_ms["stock"] == pytest.approx(stock * UNIT * 1000)


def test_settings_force_their_choices_without_measuring(
    monkeypatch: pytest.MonkeyPatch, classifier_dir: Path, make_settings: Callable[..., Settings]
) -> None:
    def never(*_: Any) -> float:
        raise AssertionError("a forced choice was measured")

    monkeypatch.setattr(autotune._Probe, "lanes", never)
    monkeypatch.setattr(autotune._Probe, "lone", never)
    for packed in (True, False):
        model = loaded(classifier_dir)
        settings = make_settings(
            model_path=classifier_dir, packed_linear=packed, concurrent_batches=2, max_batch_size=12,
            wide_lone_batches=packed, torch_threads=2,
        )  # fmt: skip
        # Only the "is one probe batch quick enough to tune" check may time a forward pass.
        plan = plan_serving(model, settings, 2)
        assert (plan.packed_linear, plan.lanes, plan.max_batch_size, plan.wide_lone_batches) == (packed, 2, 12, packed)
        assert set(plan.chosen_by.values()) == {"setting"}
        assert (packed_layers(model.model) > 0) is packed


def test_a_causal_lm_keeps_default_lanes_and_rows(copy_lm_dir: Path, make_settings: Callable[..., Settings]) -> None:
    plan = plan_serving(loaded(copy_lm_dir), make_settings(model_path=copy_lm_dir, torch_threads=2), 2)
    assert (plan.lanes, plan.max_batch_size) == (2, None)
    assert {plan.chosen_by[name] for name in ("lanes", "max_batch_size", "wide_lone_batches")} == {"default"}
    assert plan.chosen_by["packed_linear"] == "measured" and set(plan.timings_ms) == {"packed", "stock"}


def test_the_choices_are_exported(classifier_dir: Path, serve: Callable[..., Any]) -> None:
    with serve(classifier_dir, packed_linear=False, max_batch_size=12, concurrent_batches=1) as client:
        text = client.get("/metrics", headers=auth("reader")).text
    found = [labels for labels, _ in samples(text, "heldout_inference_config_info")]
    assert any(
        labels["packed_linear"] == "false" and labels["lanes"] == "1" and labels["max_batch_size"] == "12"
        and labels["wide_lone_batches"] == "true"
        and labels["chosen_by"]
        == "packed_linear=setting,lanes=setting,max_batch_size=setting,wide_lone_batches=default"
        for labels in found
    ), found
