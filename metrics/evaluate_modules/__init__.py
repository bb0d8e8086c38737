"""heldout's metrics published as local `evaluate` modules, loadable offline by path.

Each module lives in its own folder ``<name>/<name>.py`` and computes through the same core as the
service. ``evaluate.load(module_path("heldout_f1"))`` works without the Hub.
"""

from pathlib import Path

MODULES_DIR = Path(__file__).resolve().parent


def module_path(name: str) -> str:
    path = MODULES_DIR / name / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no evaluate module named {name!r} under {MODULES_DIR}")
    return str(path)


def available_modules() -> list[str]:
    return sorted(p.parent.name for p in MODULES_DIR.glob("*/*.py") if p.stem == p.parent.name)
