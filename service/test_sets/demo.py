"""The demo model's held-out split, registered as the demo's blind test set when the demo is served.

The demo build writes its stratified test split next to the weights (``test.jsonl``); the model never
trained on it. Registering it once gives a fresh install a blind set to fetch inputs from, score
against and evaluate on, protected the way a real one would be.
"""

import logging
from pathlib import Path

from service.db.models import TestSet
from service.db.session import Database
from service.inference.demo import demo_dir
from service.inference.demo_data import TEST_SET_FILE
from service.settings import Settings
from service.tasks import Task
from service.test_sets.config import ConfigForm
from service.test_sets.store import Upload, create_if_absent

DEMO_TEST_SET = "rotten-tomatoes"
# The demo set shows the protections: a daily budget per key and the Ladder on macro F1.
DEMO_PROTECTION = ConfigForm(daily_budget=100, ladder=True, ladder_metric="f1")
log = logging.getLogger("heldout.test_sets")


def demo_split(settings: Settings) -> Path | None:
    """The served model's held-out split, if the served model is the demo."""
    if settings.model_path is None:
        return None
    served, demo = settings.model_path.resolve(), demo_dir(settings.data_dir).resolve()
    split = served / TEST_SET_FILE
    return split if served == demo and split.is_file() else None


def register_demo_test_set(db: Database, settings: Settings) -> TestSet | None:
    """Registers the split as ``rotten-tomatoes`` unless a set of that name exists; the new set, else None."""
    split = demo_split(settings)
    if split is None:
        return None
    with split.open("rb") as stream:
        upload = Upload(
            name=DEMO_TEST_SET,
            task=Task.classification,
            filename=split.name,
            stream=stream,
            fmt=None,
            config=DEMO_PROTECTION,
            training=[],
            created_by="demo",
        )
        row = create_if_absent(db, upload, settings.max_record_bytes)
    if row is not None:
        log.info("registered the demo's held-out split as test set %s (id %s)", row.name, row.id)
    return row
