"""The Dockerfile: hadolint-clean, one file for the CPU and the CUDA image, non-root with a health check,
configured only through HELDOUT_* settings, with no weights or secrets inside. No Docker engine runs
here, so these are checks on the file itself."""

import re
import shlex
import tomllib

from service.settings import Settings
from tests.deploy_tools import CHART, ROOT, load_yaml, run, tool

DOCKERFILE = ROOT / "Dockerfile"
# Runtime plumbing the image may set besides HELDOUT_* settings.
PLUMBING_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def env_names(stage: list[tuple[str, str]]) -> set[str]:
    return {word.split("=", 1)[0] for op, args in stage if op == "ENV" for word in shlex.split(args)}


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILE)], cwd=ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_only_hadolint_exception_is_the_variant_stage() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore" in line]
    assert [lines[i] for i in ignores] == ["# hadolint ignore=DL3006"]
    assert lines[ignores[0] + 1] == "FROM runtime-${VARIANT}"


def test_variant_build_argument_picks_a_cpu_or_cuda_runtime() -> None:
    froms = [args for op, args in instructions() if op == "FROM"]
    assert len(froms) >= 4, "multi-stage: python, build, both runtimes, final"
    assert any(f.startswith("debian:") and f.endswith(" AS runtime-cpu") for f in froms)
    assert any(re.match(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+ AS runtime-gpu$", f) for f in froms)
    text = DOCKERFILE.read_text()
    assert "ARG VARIANT=cpu" in text
    assert "https://download.pytorch.org/whl/cpu" in text and "https://download.pytorch.org/whl/cu" in text


def test_torch_build_satisfies_the_pyproject_pin() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if d.startswith("torch")]
    (version,) = re.findall(r"ARG TORCH_VERSION=(\S+)", DOCKERFILE.read_text())
    assert pin == f"torch=={version}"


def test_final_stage_is_non_root_with_a_healthz_check_and_serves_on_all_interfaces() -> None:
    final = stages()[-1]
    (user,) = [args for op, args in final if op == "USER"]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "numeric non-root uid:gid, so runAsNonRoot can verify it"
    (healthcheck,) = [args for op, args in final if op == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    entrypoint = [args for op, args in final if op in ("ENTRYPOINT", "CMD")]
    assert entrypoint == ['["heldout"]', '["serve", "--host", "0.0.0.0", "--port", "8000"]']


def test_configuration_is_heldout_settings_only_and_the_data_dir_is_a_volume() -> None:
    final = stages()[-1]
    names = env_names(final)
    settings = {f"HELDOUT_{name.upper()}" for name in Settings.model_fields}
    assert names - PLUMBING_ENV <= settings, names - PLUMBING_ENV - settings
    assert "HELDOUT_DATA_DIR=/var/lib/heldout" in DOCKERFILE.read_text()
    assert ("VOLUME", '["/var/lib/heldout"]') in final
    assert load_yaml(CHART / "values.yaml")["dataDir"] == "/var/lib/heldout"


def test_no_secrets_or_weights_are_baked_in() -> None:
    for op, args in instructions():
        if op in ("ENV", "ARG"):
            assert not SECRET_WORDS.search(args), args
        if op in ("COPY", "ADD"):
            assert op == "COPY", "ADD can fetch URLs and unpack archives"
            sources = args.split()[:-1]
            if not sources[0].startswith("--from="):
                assert set(sources) <= {"pyproject.toml", "README.md", "metrics", "monitors", "service"}, args
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ignored[0] == "*", "the build context starts empty and names what it lets in"
    for pattern in ("**/.env", "**/*.safetensors", "**/*.bin", "**/*.pt"):
        assert pattern in ignored, pattern
