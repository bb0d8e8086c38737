"""The README is part of the contract: its quickstart and settings table match the code, and its shell
commands run as written against a live demo-like server, answering what it documents.

``tests/readme_blocks.py`` says how blocks, skip markers and documented answers are read.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.settings import Settings
from tests.docs_server import SHELL_ENV, docs_server
from tests.readme_blocks import SHELL, Block, Command, blocks, commands, documented_shape, mismatches

pytest_plugins = ["tests.inference_fixtures"]
ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI_SCRIPT = (ROOT / ".ci" / "run").read_text()
STATUS = "docs-test-status:"
# How long a read of an asynchronous job (an evaluation) may be repeated until it has its documented shape.
POLL_S = 60


def test_readme_lists_every_setting() -> None:
    for name in Settings.model_fields:
        assert f"`HELDOUT_{name.upper()}`" in README, name


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", quickstart, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "heldout serve" in commands[0]
    assert commands[1] in CI_SCRIPT


def test_every_block_that_talks_to_a_server_is_a_shell_block_run_or_marked() -> None:
    found = blocks(README)
    for block in found:
        talks = re.search(r"\bcurl\b|localhost:\d|\bheldout (serve|keys)\b", block.text)
        if talks and block.info not in SHELL | {"python"}:
            pytest.fail(f"README line {block.line}: a command block fenced as {block.info!r}; fence it as bash")
        if block.skip is not None:
            assert block.info in SHELL, f"README line {block.line}: a skip marker on a {block.info!r} block"
            assert block.skip, f"README line {block.line}: a skip marker says why the block does not run"
    assert sum(block.info in SHELL and block.skip is None for block in found) >= 4


@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str
    statuses: list[int]

    def describe(self, command: Command) -> str:
        return f"README line {command.line}: {command.text}\nrc {self.rc}\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}"


def curl_shim(directory: Path) -> Path:
    """A ``curl`` first on PATH that runs the real one and reports each answer's status on stderr."""
    real = shutil.which("curl")
    assert real, "the docs test needs curl"
    shim = directory / "curl"
    shim.write_text(f"#!/bin/sh\nexec {real} --write-out '%{{stderr}}{STATUS} %{{http_code}}\\n' \"$@\"\n")
    shim.chmod(0o755)
    return directory


def run(command: Command, prelude: list[str], base_url: str, cwd: Path, env: dict[str, str]) -> Ran:
    text = command.text.replace("http://localhost:8000", base_url).replace("localhost:8000", base_url)
    script = "\n".join(["set -eo pipefail", *prelude, text])
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    statuses = [int(code) for code in re.findall(rf"^{STATUS} (\d+)$", done.stderr, flags=re.M)]
    stderr = re.sub(rf"^{STATUS} \d+\n", "", done.stderr, flags=re.M)
    return Ran(done.returncode, done.stdout, stderr, statuses)


def answer_problems(command: Command, ran: Ran) -> list[str]:
    """Why the answer is not what the README says: a failed command, a non-2xx status, another shape."""
    if ran.rc != 0:
        return [f"exit status {ran.rc}"]
    if "curl " in command.text and not ran.statuses:
        return ["curl reported no HTTP status"]
    if any(not 200 <= status < 300 for status in ran.statuses):
        return [f"HTTP statuses {ran.statuses}"]
    shape = documented_shape(command.documented)
    if shape is None:
        return []
    try:
        answer = json.loads(ran.stdout)
    except json.JSONDecodeError:
        return ["the answer is not JSON"]
    return mismatches(shape, answer)


def readme_commands() -> list[tuple[Block, Command]]:
    return [(b, c) for b in blocks(README) if b.info in SHELL and b.skip is None for c in commands(b)]


def test_readme_shell_commands_run_as_written_against_a_demo_like_server(tmp_path: Path) -> None:
    cwd = tmp_path / "reader"
    cwd.mkdir()
    (cwd / "examples").symlink_to(ROOT / "examples")  # the commands run from a clone's root
    env = {
        **os.environ,
        **SHELL_ENV,
        "PATH": f"{curl_shim(tmp_path)}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    to_run = readme_commands()
    assert any("/scores" in c.text for _, c in to_run) and any("/v1/evaluations" in c.text for _, c in to_run)
    prelude: list[str] = []
    with docs_server(tmp_path / "data") as base_url:
        for _, command in to_run:
            ran = run(command, prelude, base_url, cwd, env)
            deadline = time.monotonic() + POLL_S
            while (problems := answer_problems(command, ran)) and command.is_read and time.monotonic() < deadline:
                time.sleep(0.5)
                ran = run(command, prelude, base_url, cwd, env)
            assert not problems, f"{ran.describe(command)}\n" + "\n".join(problems)
            if command.is_assignment:
                prelude.append(command.text)


def test_documented_answers_are_checked_key_by_key_and_type_by_type() -> None:
    shape = documented_shape(
        '{"items": [{"id": "rt-00000", "text": "..."}, ...], "next_cursor": 2, "total": 973,\n "audit": {...}}'
    )
    fits = {"items": [{"id": "a", "text": "b"}, {"id": "c", "text": "d"}], "next_cursor": 9, "total": 60, "audit": {}}
    assert mismatches(shape, fits) == []
    assert mismatches(shape, {**fits, "items": []}) == ["$.items: documented 1 item(s) or more, answered 0"]
    assert mismatches(shape, {**fits, "next_cursor": None}) == ["$.next_cursor: documented number, answered null"]
    assert mismatches(shape, {**fits, "extra": 1}) == ["$.extra: answered, not documented (add it or trim with ...)"]
    assert mismatches(shape, {**fits, "items": [{"id": "a"}]}) == ["$.items[0].text: documented, not answered"]
    assert mismatches(documented_shape('{"metrics": {"f1": 0.76, ...}}'), {"metrics": {}}) == [
        "$.metrics.f1: documented, not answered"
    ]
    assert documented_shape("rotten-tomatoes (id 1): 973 inputs") is None


def test_blocks_commands_and_markers_are_read_as_the_readme_states() -> None:
    markdown = "\n".join(
        [
            "<!-- docs-test: skip starts a server -->",
            "```bash",
            "heldout serve",
            "```",
            "",
            "```bash",
            'H="Authorization: Bearer $KEY"   # a note',
            'curl -s -H "$H" localhost:8000/v1/evaluations \\',
            "  -H \"$JSON\" -d '{}'",
            '# {"id": 1,',
            '#  "status": "queued"}',
            "curl -s localhost:8000/healthz",
            "```",
        ]
    )
    skipped, ran = blocks(markdown)
    assert skipped.skip == "starts a server" and ran.skip is None and ran.info == "bash"
    assignment, post, read = commands(ran)
    assert assignment.is_assignment and not post.is_assignment
    assert post.text.endswith("-d '{}'") and post.line == 8 and not post.is_read
    assert documented_shape(post.documented) == {"id": 1, "status": "queued"}
    assert read.is_read and read.documented == ""
