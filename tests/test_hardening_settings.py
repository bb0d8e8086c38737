"""Settings that cannot work refuse to start, naming the variable; a low HELDOUT_MAX_NEW_TOKENS lowers the default."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.cli import main as cli_main
from service.settings import Settings, describe_errors
from tests.conftest import auth

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

POSITIVE, NEVER_FIRES, FINITE = "must be a positive duration", "never fires", "finite number"
UNWORKABLE = [
    ("HELDOUT_LOG_RETENTION", "-P1D", POSITIVE),
    ("HELDOUT_LOG_RETENTION", "0", POSITIVE),
    ("HELDOUT_ONLINE_WINDOW", "PT0S", POSITIVE),
    ("HELDOUT_ONLINE_WINDOW", "-60", POSITIVE),
    ("HELDOUT_DRIFT_WINDOW", "-PT1H", POSITIVE),
    ("HELDOUT_DRIFT_SCHEDULE", "0 0 31 2 *", NEVER_FIRES),
    ("HELDOUT_DRIFT_SCHEDULE", "0 0 30 2 *", NEVER_FIRES),
    ("HELDOUT_DRIFT_THRESHOLDS", '{"n_chars": NaN}', FINITE),
    ("HELDOUT_DRIFT_THRESHOLDS", '{"text": Infinity}', FINITE),
    ("HELDOUT_DRIFT_SHARE", "nan", FINITE),
    ("HELDOUT_MULTILABEL_THRESHOLD", "nan", FINITE),
    ("HELDOUT_REQUEST_TIMEOUT_S", "inf", FINITE),
    ("HELDOUT_MAX_BATCH_DELAY_MS", "nan", FINITE),
]


@dataclass(frozen=True)
class AnyLine:
    """Equal to an error line that starts with the variable's name and gives the reason."""

    variable: str
    reason: str

    def __eq__(self, line: object) -> bool:
        return isinstance(line, str) and line.startswith(self.variable) and self.reason in line


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No HELDOUT_* variable from the caller's environment; a throwaway data dir and no demo model."""
    for name in list(os.environ):
        if name.startswith("HELDOUT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HELDOUT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HELDOUT_DEMO_MODEL", "false")
    return monkeypatch


@pytest.mark.parametrize(("variable", "value", "reason"), UNWORKABLE)
def test_unworkable_setting_is_refused(clean_env: pytest.MonkeyPatch, variable: str, value: str, reason: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert describe_errors(refused.value) == [AnyLine(variable, reason)]


def test_durations_read_from_the_environment_as_seconds(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HELDOUT_LOG_RETENTION", "3600")
    clean_env.setenv("HELDOUT_ONLINE_WINDOW", "90.5")
    settings = Settings()
    assert settings.log_retention == timedelta(hours=1) and settings.online_window == timedelta(seconds=90.5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HELDOUT_LOG_RETENTION", "P1D"),
        ("HELDOUT_ONLINE_WINDOW", "PT1S"),
        ("HELDOUT_DRIFT_SCHEDULE", "0 0 29 2 *"),
        ("HELDOUT_DRIFT_SCHEDULE", "*/30 * * * *"),
        ("HELDOUT_DRIFT_THRESHOLDS", '{"n_chars": 0.2}'),
    ],
)
def test_workable_edge_settings_are_accepted(clean_env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    clean_env.setenv(variable, value)
    Settings()


@pytest.mark.parametrize(("variable", "value", "reason"), UNWORKABLE)
def test_serve_names_the_variable_and_exits_nonzero_without_starting(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, reason: str
) -> None:
    started: list[Any] = []
    clean_env.setattr("uvicorn.run", lambda *args, **kwargs: started.append(args))
    clean_env.setattr("monitors.multiproc.prepare_multiprocess_dir", lambda path: None)
    clean_env.setenv(variable, value)
    assert cli_main(["serve", "--port", "0"]) == 2
    assert not started
    err = capsys.readouterr().err
    assert f"{variable}" in err and reason in err and "Traceback" not in err


def test_heldout_serve_process_prints_one_clear_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HELDOUT_LOG_RETENTION", "-P1D")
    command = [sys.executable, "-m", "service.cli", "serve", "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "HELDOUT_LOG_RETENTION: must be a positive duration" in done.stderr
    assert "Traceback" not in done.stderr


def test_api_keys_value_is_never_echoed(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("HELDOUT_API_KEYS", "admin:super-secret-value")
    clean_env.setenv("HELDOUT_DRIFT_SHARE", "nan")
    assert cli_main(["keys", "list"]) == 2
    captured = capsys.readouterr()
    assert "HELDOUT_DRIFT_SHARE" in captured.err and "super-secret-value" not in captured.out + captured.err


@pytest.fixture
def generator(serve: ServeFactory, copy_lm_dir: Path) -> Iterator[TestClient]:
    with serve(copy_lm_dir, max_new_tokens=4) as client:
        yield client


def test_generate_default_length_is_lowered_to_the_cap(generator: TestClient) -> None:
    response = generator.post("/v1/generate", headers=auth("evaluator"), json={"inputs": ["a b c d =", "b ="]})
    assert response.status_code == 200, response.text
    assert all(0 < out["tokens"] <= 4 for out in response.json()["outputs"])


def test_explicit_length_over_the_cap_is_still_refused(generator: TestClient) -> None:
    response = generator.post("/v1/generate", headers=auth("evaluator"), json={"inputs": ["a ="], "max_new_tokens": 5})
    assert response.status_code == 422 and "HELDOUT_MAX_NEW_TOKENS" in response.text


def test_serve_names_a_variable_that_is_not_even_json(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("HELDOUT_DRIFT_THRESHOLDS", "{not json")
    assert cli_main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "HELDOUT_DRIFT_THRESHOLDS" in err and "Traceback" not in err
