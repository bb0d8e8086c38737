"""Points prometheus-client at its multiprocess folder.

Kept free of any prometheus_client import on purpose: the library picks its value storage when it
is first imported, so this must run before that, in the parent of the worker processes.
"""

import os
import shutil
import sys
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: Path) -> None:
    """Wipe stale per-process files from an earlier run, then set the environment for this process tree."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess folder was set")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path.resolve())
