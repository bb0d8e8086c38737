"""The layering of #13, checked on the source: metrics is pure computation, monitors never reach into the
service, and the domains under service/ speak typed errors, not HTTP, outside their start-up wiring.

Every ``import`` and ``from ... import`` counts, wherever it stands (function bodies, ``if TYPE_CHECKING:``),
relative imports resolved against the file's package; ``from a import b`` counts as importing ``a.b`` too,
since b may be a module.
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("service", "metrics", "monitors")
DOMAINS = (
    "service/inference",
    "service/evaluations",
    "service/test_sets",
    "service/monitoring",
    "service/explanations",
)


@dataclass(frozen=True)
class Rule:
    """Modules under any of ``under`` (folders relative to the root) must not import ``forbidden`` or below."""

    under: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed_files: tuple[str, ...] = ()


RULES = (
    Rule(("metrics",), ("service", "monitors", "fastapi", "starlette", "sqlalchemy", "torch")),
    Rule(("monitors",), ("service",)),
    Rule(DOMAINS, ("service.schemas", "service.errors")),
    Rule(DOMAINS, ("fastapi", "starlette"), allowed_files=tuple(f"{domain}/startup.py" for domain in DOMAINS)),
)


@dataclass(frozen=True)
class Import:
    line: int
    module: str
    names: tuple[str, ...]  # for ``from module import a, b``: module.a and module.b, which may be modules


def imports(root: Path, relative: Path) -> Iterator[Import]:
    tree = ast.parse((root / relative).read_text(encoding="utf-8"), filename=str(relative))
    package = list(relative.parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield Import(node.lineno, module, tuple(f"{module}.{alias.name}" for alias in node.names))


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def offending(imported: Import, prefix: str) -> list[str]:
    """The module itself when it is forbidden, else the forbidden submodules it imports by name."""
    if within(imported.module, prefix):
        return [imported.module]
    return [name for name in imported.names if within(name, prefix)]


def violations(root: Path) -> list[str]:
    """``path:line imports X`` for every import that breaks a rule, in path and line order."""
    found: set[tuple[str, int, str]] = set()
    for relative in sorted(p.relative_to(root) for tree in TREES for p in (root / tree).rglob("*.py")):
        path = relative.as_posix()
        rules = [
            rule
            for rule in RULES
            if any(path.startswith(folder + "/") for folder in rule.under) and path not in rule.allowed_files
        ]
        if not rules:
            continue
        for imported in imports(root, relative):
            for prefix in (prefix for rule in rules for prefix in rule.forbidden):
                found.update((path, imported.line, module) for module in offending(imported, prefix))
    return [f"{path}:{line} imports {module}" for path, line, module in sorted(found)]


def test_service_metrics_and_monitors_keep_their_layers() -> None:
    found = violations(ROOT)
    assert not found, f"{len(found)} imports break the layering:\n" + "\n".join(found)


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    """Relative, function-level and submodule imports are caught; start-up wiring and allowed imports are not."""
    files = {
        "metrics/__init__.py": "",
        "metrics/pure.py": "import numpy\n\n\ndef f():\n    from service import errors\n    import torch.nn\n",
        "monitors/gauges.py": "from metrics.pure import f\nfrom service.settings import Settings\n",
        "service/errors.py": "from fastapi import HTTPException\n",
        "service/inference/__init__.py": "from .. import schemas\n",
        "service/inference/engine.py": "from ..errors import Problem\nfrom .startup import wire\nimport starlette\n",
        "service/inference/startup.py": "from fastapi import FastAPI\nfrom service.inference.engine import run\n",
        "service/monitoring/views/page.py": "from fastapi.responses import HTMLResponse\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert violations(tmp_path) == [
        "metrics/pure.py:5 imports service",
        "metrics/pure.py:6 imports torch.nn",
        "monitors/gauges.py:2 imports service.settings",
        "service/inference/__init__.py:1 imports service.schemas",
        "service/inference/engine.py:1 imports service.errors",
        "service/inference/engine.py:3 imports starlette",
        "service/monitoring/views/page.py:1 imports fastapi.responses",
    ]
