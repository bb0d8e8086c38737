"""lm-evaluation-harness end to end against heldout's OpenAI-compatible ``POST /v1/completions``.

The harness runs as its CLI does for a user (a subprocess, ``--model local-completions``), on the local task
in tests/lm_eval_task, with no tokenizer (``tokenizer_backend=none``: prompts go as text) and the Hub
switched off, so nothing is fetched. Its score must equal the score of the model's own greedy ``generate``
on the same prompts, cut at the task's stop sequence the way the completions API defines it.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from service.app import create_app
from service.settings import Settings
from tests.conftest import KEYS, env_keys
from tests.live_server import served_in_thread

pytest_plugins = ["tests.inference_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = ROOT / "tests" / "lm_eval_task"
TASK = yaml.safe_load((TASK_DIR / "copy_until_h.yaml").read_text())
SERVED_NAME = "copy-gpt2"


@pytest.fixture
def base_url(tmp_path: Path, copy_lm_dir: Path) -> Iterator[str]:
    """heldout in a uvicorn thread of this process, serving the copy model under ``SERVED_NAME``."""
    settings = Settings(
        data_dir=tmp_path / "data",
        api_keys=env_keys(),
        metric_workers=1,
        model_path=copy_lm_dir,
        model_name=SERVED_NAME,
        drift_executor="thread",
    )
    with served_in_thread(create_app(settings)) as base_url:
        yield base_url


def greedy_answers(model_dir: Path, prompts: list[str]) -> list[str]:
    """The task's answers from the model itself: greedy ``generate``, text before the first stop sequence
    (the completions API leaves the stop sequence out), stripped as the task's filter does."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    stops = TASK["generation_kwargs"]["until"]
    answers = []
    with torch.inference_mode():
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt")
            sequence = model.generate(
                **encoded,
                max_new_tokens=TASK["generation_kwargs"]["max_gen_toks"],
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )[0]
            text = tokenizer.decode(sequence[encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            for stop in stops:
                text = text.split(stop)[0]
            answers.append(text.strip())
    return answers


def run_lm_eval(base_url: str, output: Path) -> subprocess.CompletedProcess[str]:
    model_args = ",".join(
        [
            f"base_url={base_url}/v1/completions",
            f"model={SERVED_NAME}",
            "tokenizer_backend=none",
            "tokenized_requests=False",
            "num_concurrent=4",
            "max_retries=1",
            "timeout=60",
        ]
    )
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEYS["evaluator"],  # local-completions sends it as "Authorization: Bearer <key>"
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(output / "datasets-cache"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "run",
        "--model",
        "local-completions",
        "--model_args",
        model_args,
        "--include_path",
        str(TASK_DIR),
        "--tasks",
        TASK["task"],
        "--output_path",
        str(output / "results"),
        "--log_samples",
    ]
    # data_files in the task is relative to the repository root, as for a user running it from there.
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_lm_eval_generate_until_scores_what_the_model_generates(
    base_url: str, copy_lm_dir: Path, tmp_path: Path
) -> None:
    docs = [json.loads(line) for line in (ROOT / TASK["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
    answers = greedy_answers(copy_lm_dir, [doc["prompt"] for doc in docs])
    hits = [answer == doc["target"] for answer, doc in zip(answers, docs, strict=True)]
    expected = sum(hits) / len(hits)
    assert 0 < expected < 1, f"the task no longer tells right from wrong answers: {answers}"

    finished = run_lm_eval(base_url, tmp_path)

    refusals = [line for line in finished.stderr.splitlines() if "API request failed" in line]
    assert finished.returncode == 0, "\n".join(refusals[:3]) or finished.stderr[-4000:]
    (results_file,) = (tmp_path / "results").rglob("results_*.json")
    (samples_file,) = (tmp_path / "results").rglob(f"samples_{TASK['task']}_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    assert [sample["arguments"]["gen_args_0"]["arg_0"] for sample in samples] == [doc["prompt"] for doc in docs]
    assert [sample["filtered_resps"][0] for sample in samples] == answers
    reported = json.loads(results_file.read_text())["results"][TASK["task"]]["exact_match,strip"]
    assert reported == pytest.approx(expected, abs=1e-12)
