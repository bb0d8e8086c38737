"""The README is part of the contract: its quickstart and settings table must match the code."""

import re
from pathlib import Path

from service.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CI_SCRIPT = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_readme_lists_every_setting() -> None:
    for name in Settings.model_fields:
        assert f"`HELDOUT_{name.upper()}`" in README, name


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", quickstart, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "heldout serve" in commands[0]
    assert commands[1] in CI_SCRIPT
