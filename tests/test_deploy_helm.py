"""The Helm chart, rendered by Helm's own library: with the default values and with GPU + PostgreSQL + 3
replicas, every object must be valid Kubernetes (strict schemas) and the chart must keep its promises:
non-root and read-only, probes with a startup budget, secrets for keys and the database URL, no SQLite
behind several replicas."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from yamllint import linter
from yamllint.config import YamlLintConfig

from service.settings import Settings
from service.upload_spool import spool_dir
from tests.deploy_tools import (
    CHART,
    DASHBOARD,
    DEPLOY_DATA,
    GPU_POSTGRES_VALUES,
    NAMESPACE,
    RELEASE,
    as_stream,
    by_kind,
    load_yaml,
    objects,
    render,
)

KUBE_VERSION = "1.30"
VALUE_SETS: dict[str, dict[str, Any] | None] = {"default": None, "gpu-postgres": load_yaml(GPU_POSTGRES_VALUES)}
# kubernetes-validate knows only built-in kinds; these CRDs are checked against schemas of the fields we use.
CRD_SCHEMAS = {
    kind: json.loads((DEPLOY_DATA / "schemas" / f"{kind.lower()}.monitoring.coreos.com-v1.json").read_text())
    for kind in ("ServiceMonitor", "PrometheusRule")
}
# Helm's Chart.yaml and values files conventionally start without "---"; the dashboard JSON has long queries.
YAMLLINT = YamlLintConfig("extends: default\nrules:\n  document-start: disable\n  line-length:\n    max: 220\n")
SETTINGS = {f"HELDOUT_{name.upper()}" for name in Settings.model_fields}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> dict[str, str]:
    return render(VALUE_SETS[request.param])


@pytest.fixture(scope="module")
def gpu_postgres() -> dict[str, list[dict[str, Any]]]:
    return by_kind(render(VALUE_SETS["gpu-postgres"]))


@pytest.fixture(scope="module")
def default() -> dict[str, list[dict[str, Any]]]:
    return by_kind(render())


def pod_specs(kinds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    specs = [d["spec"]["template"]["spec"] for d in kinds.get("Deployment", [])]
    return specs + [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in kinds.get("CronJob", [])]


def server(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (deployment,) = kinds["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_every_object_validates_strictly(rendered: dict[str, str]) -> None:
    for obj in objects(rendered):
        if obj["kind"] in CRD_SCHEMAS:
            jsonschema.Draft202012Validator(CRD_SCHEMAS[obj["kind"]]).validate(obj)
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_rendered_manifests_pass_yamllint(rendered: dict[str, str]) -> None:
    problems = list(linter.run(as_stream(rendered), YAMLLINT))
    assert not problems, "\n".join(f"{p.line}:{p.column} {p.message}" for p in problems)


@pytest.mark.parametrize(
    "path",
    [CHART / "Chart.yaml", CHART / "values.yaml", GPU_POSTGRES_VALUES, *sorted(DEPLOY_DATA.glob("*.yaml"))],
    ids=lambda p: str(p.relative_to(CHART.parents[1])),
)
def test_yaml_sources_pass_yamllint(path: Path) -> None:
    problems = list(linter.run(path.read_text(), YAMLLINT))
    assert not problems, "\n".join(f"{path}:{p.line}:{p.column} {p.message}" for p in problems)


def test_helm_lint_is_clean() -> None:
    import helm_python

    for values in VALUE_SETS.values():
        report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)
        assert not report["errors"], report
        assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


def test_values_schema_rejects_unknown_and_mistyped_values() -> None:
    import helm_python

    for bad in ({"replicaCount": "3"}, {"gpu": {"enabeld": True}}, {"env": {"MODEL_PATH": "/m"}}):
        with pytest.raises(helm_python.HelmValuesError):
            render(bad)


@pytest.mark.parametrize(
    "values",
    [{"replicaCount": 2}, {"autoscaling": {"enabled": True, "maxReplicas": 3}}],
    ids=["replicas", "autoscaling"],
)
def test_several_replicas_with_sqlite_fail_with_a_clear_message(values: dict[str, Any]) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError) as error:
        render(values)
    assert "cannot share SQLite" in str(error.value) and "database.type=postgresql" in str(error.value)


def test_postgresql_needs_a_url_or_a_secret() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="needs database.url or database.existingSecret"):
        render({"database": {"type": "postgresql"}})


def test_pods_run_non_root_on_a_read_only_root(rendered: dict[str, str]) -> None:
    for spec in pod_specs(by_kind(rendered)):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]


def test_writable_paths_are_volumes_and_the_model_is_read_only(rendered: dict[str, str]) -> None:
    kinds = by_kind(rendered)
    mounts = {m["mountPath"]: m for m in server(kinds)["volumeMounts"]}
    data_dir = env(server(kinds))["HELDOUT_DATA_DIR"]
    assert {data_dir, f"{data_dir}/prometheus", "/tmp"} <= set(mounts)
    if "HELDOUT_MODEL_PATH" in env(server(kinds)):
        model = [m for m in mounts.values() if m["name"] == "model"]
        assert model and model[0]["readOnly"] is True
        assert env(server(kinds))["HELDOUT_MODEL_PATH"].startswith(model[0]["mountPath"])


QUANTITY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(quantity: str) -> int:
    for unit, factor in QUANTITY_UNITS.items():
        if quantity.endswith(unit):
            return int(float(quantity.removesuffix(unit)) * factor)
    return int(quantity)


def test_uploads_spool_to_the_data_volume_which_holds_a_largest_upload(rendered: dict[str, str]) -> None:
    """The /tmp emptyDir (1 GiB) would get the pod evicted by one large upload; the data volume holds it."""
    kinds = by_kind(rendered)
    container = server(kinds)
    variables = env(container)
    spool = str(spool_dir(Path(variables["HELDOUT_DATA_DIR"])))
    covering = [m for m in container["volumeMounts"] if f"{spool}/".startswith(m["mountPath"].rstrip("/") + "/")]
    mount = max(covering, key=lambda m: len(m["mountPath"]))
    assert mount["name"] == "data" and "subPath" not in mount, mount
    (deployment,) = kinds["Deployment"]
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    largest = int(variables.get("HELDOUT_MAX_UPLOAD_BYTES", Settings.model_fields["max_upload_bytes"].default))
    if "emptyDir" in volume:
        assert quantity_bytes(volume["emptyDir"].get("sizeLimit", str(2**63))) > largest
    else:
        claim = next(
            c
            for c in kinds["PersistentVolumeClaim"]
            if c["metadata"]["name"] == volume["persistentVolumeClaim"]["claimName"]
        )
        assert quantity_bytes(claim["spec"]["resources"]["requests"]["storage"]) > largest


def test_probes_and_startup_budget(rendered: dict[str, str]) -> None:
    container = server(by_kind(rendered))
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_configuration_is_heldout_settings_only(rendered: dict[str, str]) -> None:
    names = set(env(server(by_kind(rendered))))
    assert names <= SETTINGS, names - SETTINGS
    assert env(server(by_kind(rendered)))["HELDOUT_DEMO_MODEL"] == "false"


def test_api_keys_come_from_a_secret(rendered: dict[str, str]) -> None:
    source = env(server(by_kind(rendered)))["HELDOUT_API_KEYS"]
    assert set(source) == {"secretKeyRef"}


def test_default_values_are_one_cpu_replica_on_sqlite(default: dict[str, list[dict[str, Any]]]) -> None:
    (deployment,) = default["Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    container = server(default)
    assert "HELDOUT_DATABASE_URL" not in env(container) and "HELDOUT_DEVICE" not in env(container)
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert container["image"].endswith("-cpu")
    (claim,) = default["PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "CronJob"}.isdisjoint(default)
    (secret,) = default["Secret"]
    assert secret["metadata"]["name"] == env(container)["HELDOUT_API_KEYS"]["secretKeyRef"]["name"]


def test_gpu_postgres_values(gpu_postgres: dict[str, list[dict[str, Any]]]) -> None:
    (deployment,) = gpu_postgres["Deployment"]
    container = server(gpu_postgres)
    variables = env(container)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-gpu") and variables["HELDOUT_DEVICE"] == "cuda"
    assert variables["HELDOUT_DATABASE_URL"] == {"secretKeyRef": {"name": "heldout-postgres", "key": "url"}}
    assert "replicas" not in deployment["spec"] and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (hpa,) = gpu_postgres["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "Pods"}
    (pdb,) = gpu_postgres["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert "Secret" not in gpu_postgres and "PersistentVolumeClaim" not in gpu_postgres
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["image"] == "registry.example.com/models/sentiment:2024-06-01"
    assert init["command"] == ["cp", "-R", "/model/.", "/models/"]
    assert variables["HELDOUT_MODEL_PATH"] == "/models/sentiment"
    assert "prometheus.io/scrape" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_service_monitor_scrapes_the_service_port(gpu_postgres: dict[str, list[dict[str, Any]]]) -> None:
    (monitor,) = gpu_postgres["ServiceMonitor"]
    (service,) = gpu_postgres["Service"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == service["spec"]["ports"][0]["name"]


def test_drift_cronjob_posts_with_a_key_from_the_secret(gpu_postgres: dict[str, list[dict[str, Any]]]) -> None:
    (cronjob,) = gpu_postgres["CronJob"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    variables = env(container)
    assert variables["URL"] == f"http://{RELEASE}.{NAMESPACE}.svc:8000/v1/drift/checks"
    assert variables["API_KEY"] == {"secretKeyRef": {"name": "heldout-api-keys", "key": "drift-check-key"}}
    assert "-X POST" in container["command"][-1] and "Bearer $API_KEY" in container["command"][-1]


def test_chart_managed_secret_holds_role_key_pairs_and_the_drift_key() -> None:
    import base64

    values = {"apiKeys": {"keys": [{"role": "admin", "key": "a" * 32}]}, "driftCheck": {"enabled": True}}
    (secret,) = by_kind(render(values))["Secret"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    drift_key = data["drift-check-key"]
    assert len(drift_key) == 48
    assert data["api-keys"] == f"admin:{'a' * 32},evaluator:{drift_key}"


def test_model_from_a_claim_is_mounted_read_only() -> None:
    values = {"model": {"source": "pvc", "path": "/models/sentiment", "pvc": {"claimName": "models"}}}
    kinds = by_kind(render(values))
    (deployment,) = kinds["Deployment"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    for obj in objects(render(values)):
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_dashboard_configmap_ships_the_dashboard(rendered: dict[str, str]) -> None:
    (configmap,) = [c for c in by_kind(rendered)["ConfigMap"] if "heldout.json" in c["data"]]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["heldout.json"]) == json.loads(DASHBOARD.read_text())
