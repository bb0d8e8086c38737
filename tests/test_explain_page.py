"""The explanation page: the same request with ``Accept: text/html``, self-contained and escaped, rendered by a
real headless Chromium (Debian's ``chromium``) whose screenshot is kept as a test artifact."""

import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import auth

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("HELDOUT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Explaining "neutral" (as many negative as positive keywords): deleting "awful" makes the first text neutral (a
# large negative attribution), deleting either keyword of the second makes it lose neutrality (large positive).
TEXTS = ["an awful and tedious film with a witty cast", "an awful film with a witty cast", "its <b>script</b> & scenes"]
# A legend cell is 2.2 × 1.2 rem, about 680 pixels at 16 px a rem: more than that must be a highlighted word.
LEGEND_CELL_PIXELS = 700


def page(client: TestClient, accept: str) -> tuple[int, str, dict[str, str]]:
    response = client.post(
        "/v1/explain",
        headers={**auth("evaluator"), "Accept": accept},
        json={"inputs": TEXTS, "method": "occlusion", "target": "neutral"},
    )
    return response.status_code, response.text, dict(response.headers)


def test_accept_text_html_answers_a_self_contained_escaped_page(serve: ServeFactory, keyword_dir: Path) -> None:
    with serve(keyword_dir) as client:
        status, html, headers = page(client, "text/html,application/xhtml+xml,*/*;q=0.8")
        json_status, body, json_headers = page(client, "application/json, text/html;q=0.5")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert "&lt;b&gt;script&lt;/b&gt;" in html and "<b>script</b>" not in html and ">&amp;<" in html
    needles = ("occlusion", "label</b> negative", "explained</b> neutral", "random comprehensiveness", "legend")
    for needle in needles:
        assert needle in html, needle
    assert "<script" not in html and "http" not in html.split("</title>", 1)[1]
    assert json_status == 200 and json_headers["content-type"] == "application/json"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_page_renders_highlights_of_both_signs_in_headless_chromium(
    serve: ServeFactory, keyword_dir: Path, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    with serve(keyword_dir) as client:
        status, html, _ = page(client, "text/html")
    assert status == 200
    source = tmp_path / "explanation.html"
    source.write_text(html, encoding="utf-8")
    screenshot = tmp_path / "explanation.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,900",
        f"--screenshot={screenshot}", source.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and screenshot.is_file(), result.stderr[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / "explanation-page.png")
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    strong_blue = int(((blue > 200) & (red < 110) & (green < 150)).sum())
    strong_red = int(((red > 200) & (green < 110) & (blue < 110)).sum())
    assert strong_blue > LEGEND_CELL_PIXELS + 300, strong_blue
    assert strong_red > LEGEND_CELL_PIXELS + 300, strong_red
    dark_text = int(((red < 60) & (green < 60) & (blue < 60)).sum())
    assert dark_text > 2000  # the words, labels and numbers were drawn
