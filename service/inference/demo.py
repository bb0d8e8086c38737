"""The embedded demo model: what ``heldout serve`` serves when no model is configured.

Built once under the data dir and reused: a MiniLM sentence classifier fine-tuned on Rotten Tomatoes
review sentences (see ``demo_train``). The build is serialised with a file lock so several workers or
replicas sharing the data dir build it only once, and it is written to a scratch folder first, so an
interrupted build never leaves a half-written model behind.
"""

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

from service.inference.demo_data import REPORT_FILE
from service.inference.model_dir import ModelLoadError, inspect_model_dir
from service.settings import Settings

DEMO_NAME = "rotten-tomatoes-minilm"


class DemoBuildError(ModelLoadError):
    pass


def demo_dir(data_dir: Path) -> Path:
    return data_dir / "models" / DEMO_NAME


def ensure_demo_model(data_dir: Path, progress: Callable[[str], None] = print) -> Path:
    """The demo model's directory, building it first if this data dir has none."""
    target = demo_dir(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".demo-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / REPORT_FILE).is_file():
            from service.inference.demo_train import build_demo

            scratch = target.with_name(f".{DEMO_NAME}.partial")
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                build_demo(scratch, data_dir / "cache", progress)
            except Exception as exc:
                raise DemoBuildError(
                    f"{target}: the demo model could not be built ({exc}); set HELDOUT_MODEL_PATH to serve your "
                    "own model, or HELDOUT_DEMO_MODEL=false to serve none"
                ) from exc
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
    return target


def served_model_path(settings: Settings, progress: Callable[[str], None] = print) -> Path | None:
    """The configured model, checked; else the demo model unless disabled; raises ModelLoadError."""
    if settings.model_path is not None:
        return inspect_model_dir(settings.model_path, settings.base_model_path).path
    if settings.demo_model:
        return ensure_demo_model(settings.data_dir, progress)
    return None
