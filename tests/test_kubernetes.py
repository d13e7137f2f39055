"""The Kubernetes manifests: built with kustomize as `kubectl apply -k` builds them, every built-in
kind validated against the Kubernetes schemas offline (kubernetes-validate, strict: unknown
fields fail), the operator kinds (ServiceMonitor, KServe InferenceService) checked by field,
and the settings a platform team needs checked one by one."""
from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
VERSION = "1.32.0"
OPERATOR_KINDS = {"ServiceMonitor", "InferenceService"}


def _built(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]
    # No kustomize here: the base's resources as they are (the overlay's patches are not applied).
    base = KUBERNETES / "base"
    names = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    return [d for name in names for d in yaml.safe_load_all((base / name).read_text()) if d]


@pytest.fixture(scope="module")
def resources() -> dict[str, dict]:
    return {d["kind"]: d for d in _built(KUBERNETES / "overlays" / "production")}


def test_every_builtin_kind_is_schema_valid(resources):
    import kubernetes_validate

    for kind, resource in resources.items():
        if kind not in OPERATOR_KINDS:
            kubernetes_validate.validate(resource, VERSION, strict=True)
    broken = copy.deepcopy(resources["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_deployment_is_what_a_platform_team_runs(resources):
    deployment = resources["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "/opt/ernie/health.py" in container["livenessProbe"]["exec"]["command"]
    drain = container["lifecycle"]["preStop"]["exec"]["command"]  # run against a server in test_drain.py
    assert drain[:3] == ["python3", "-m", "serving_core.drain"]
    seconds = float(drain[drain.index("--delay") + 1]) + float(drain[drain.index("--timeout") + 1])
    assert seconds + 10 <= pod["terminationGracePeriodSeconds"]  # 10 s left for Triton's own stop
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["allowPrivilegeEscalation"] is False
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}" in dockerfile
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["ERNIE_MODEL_REPOSITORY"]["value"].startswith("s3://")
    assert "ERNIE_MODEL_REPOSITORY" in dockerfile
    for secret_name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ERNIE_SERVING_ADMIN_KEY"):
        assert env[secret_name]["valueFrom"]["secretKeyRef"]["name"] == resources["Secret"]["metadata"]["name"]


def test_disruption_budget_autoscaler_and_monitoring_fit_together(resources):
    selector = resources["Deployment"]["spec"]["selector"]["matchLabels"]
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert resources["PodDisruptionBudget"]["spec"]["minAvailable"] < resources["Deployment"]["spec"]["replicas"]
    hpa = resources["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == resources["Deployment"]["metadata"]["name"]
    rules = yaml.safe_load((KUBERNETES / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    (metric,) = [m["pods"]["metric"]["name"] for m in hpa["metrics"]]
    assert metric in {rule["name"]["as"] for rule in rules}
    assert "nv_inference_queue_duration_us" in rules[0]["seriesQuery"]
    monitor = resources["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= resources["Service"]["metadata"]["labels"].items()
    ports = {p["name"] for p in resources["Service"]["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_kserve_inference_service():
    (service,) = yaml.safe_load_all((KUBERNETES / "kserve" / "inferenceservice.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    triton = service["spec"]["predictor"]["triton"]
    assert triton["storageUri"].startswith("s3://") and "--model-control-mode=explicit" in triton["args"]
    assert any(a.startswith("--grpc-restricted-protocol=") for a in triton["args"])
    assert service["spec"]["predictor"]["minReplicas"] >= 2
