"""The Kubernetes and KServe manifests: valid for a current Kubernetes (strict: no unknown field),
KServe's objects valid against its CRD schemas, and consistent with the server and the image."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ..conftest import COMMITTED_MODELS, REPO

K8S = REPO / "deploy" / "k8s"
KSERVE = REPO / "deploy" / "kserve"
SCHEMAS = Path(os.environ.get("DLWP_SHARED_DIR", REPO.parent / "shared")) / "schemas" / "kserve"
OVERLAYS = ["base", "gpu", "models-volume"]
# What a stop leaves unused of the grace period, at least: a slow node, a slow teardown.
STOP_MARGIN_S = 5


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def base_objects() -> dict[str, dict[str, Any]]:
    """kind → object, from the files the base kustomization lists."""
    kustomization = load(K8S / "base" / "kustomization.yaml")[0]
    objects = [obj for name in kustomization["resources"] for obj in load(K8S / "base" / name)]
    return {obj["kind"]: obj for obj in objects}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal environment (variables taken from elsewhere left out)."""
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def env_sources(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's variables taken from elsewhere (a Secret, a ConfigMap): name → valueFrom."""
    return {item["name"]: item["valueFrom"] for item in container.get("env", [])
            if "valueFrom" in item}  # fmt: skip


def kustomize(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlays are not rendered (the base is "
                    "validated from its files)")  # fmt: skip
    return copy.deepcopy(_rendered(kubectl, overlay))


@functools.cache
def _rendered(kubectl: str, overlay: str) -> list[dict[str, Any]]:
    rendered = subprocess.run([kubectl, "kustomize", str(K8S / overlay)], capture_output=True,
                              text=True, timeout=60, check=True).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the fields, as the API server's
    strict field validation does (it would otherwise prune a misspelt field silently)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


@functools.cache
def _kserve_validator(name: str) -> Any:
    schema = closed(json.loads((SCHEMAS / name).read_text()))
    # Not jsonschema.validate(): checking this 600 KB schema against its meta-schema takes 10 s.
    return jsonschema.validators.validator_for(schema)(schema)


def kserve_validator(name: str) -> Any:
    if not (SCHEMAS / name).is_file():
        pytest.skip(f"{SCHEMAS / name} is not here: KServe's CRD schemas are in ../shared/schemas")
    return _kserve_validator(name)


# ------------------------------------------------------------------------------- validity


@pytest.mark.parametrize("path", sorted((K8S / "base").glob("*.yaml")), ids=lambda p: p.name)
def test_base_objects_are_valid_kubernetes_strictly(path):
    version = kubernetes_validate.latest_version()
    for obj in load(path):
        if obj["kind"] != "Kustomization":
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_renders_valid_kubernetes(overlay):
    objects = kustomize(overlay)

    kinds = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert {obj["kind"] for obj in objects} == kinds
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_a_misspelt_field_is_caught():
    deployment = copy.deepcopy(base_objects()["Deployment"])
    container(deployment)["readinessprobe"] = container(deployment).pop("readinessProbe")

    runtime = load(KSERVE / "servingruntime.yaml")[0]
    runtime["spec"]["containers"][0]["readinessprobe"] = {}
    validator = kserve_validator("servingruntime-v1alpha1.json")

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(runtime)


@pytest.mark.parametrize(
    ("file", "schema"),
    [("servingruntime.yaml", "servingruntime-v1alpha1.json"),
     ("inferenceservice.yaml", "inferenceservice-v1beta1.json"),
     ("inferenceservice-canary.yaml", "inferenceservice-v1beta1.json")],
)  # fmt: skip
def test_kserve_objects_match_the_crd_schemas(file, schema):
    for obj in load(KSERVE / file):
        kserve_validator(schema).validate(obj)


def test_kserve_canary_is_a_new_revision_of_the_same_service_with_a_share_of_traffic():
    stable = load(KSERVE / "inferenceservice.yaml")[0]
    canary = load(KSERVE / "inferenceservice-canary.yaml")[0]
    predictor = canary["spec"]["predictor"]
    env = {e["name"]: e["value"] for e in predictor["model"].get("env", [])}

    assert canary["metadata"]["name"] == stable["metadata"]["name"], "the same service"
    assert 0 < predictor["canaryTrafficPercent"] < 100
    assert canary["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert predictor["model"]["runtime"] == stable["spec"]["predictor"]["model"]["runtime"]
    assert "DLWP_MODEL_VERSIONS" in env, "the new revision names the version it serves"


# ------------------------------------------------------------------------ what matters


def test_probes_are_the_servers_v2_health_routes():
    from service.rest.routes import v2

    routes = {getattr(route, "path", None) for route in v2.router.routes}
    deployment = container(base_objects()["Deployment"])
    runtime = load(KSERVE / "servingruntime.yaml")[0]["spec"]["containers"][0]

    for probes in (deployment, runtime):
        assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert deployment["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {"/v2/health/ready", "/v2/health/live"} <= routes


def test_probes_and_service_reach_the_port_the_server_listens_on():
    objects = base_objects()
    pod = container(objects["Deployment"])
    ports = {port["name"]: port["containerPort"] for port in pod["ports"]}
    runtime = load(KSERVE / "servingruntime.yaml")[0]["spec"]["containers"][0]
    dockerfile = (REPO / "Dockerfile").read_text()

    assert ports["http"] == int(re.search(r"DLWP_PORT=(\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    assert ports["grpc"] == 8001  # DLWP_GRPC_PORT's default
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert pod[probe]["httpGet"]["port"] in ("http", ports["http"])
    assert {p["targetPort"] for p in objects["Service"]["spec"]["ports"]} <= set(ports)
    assert int(env(runtime)["DLWP_PORT"]) == runtime["ports"][0]["containerPort"] == 8080
    assert runtime["readinessProbe"]["httpGet"]["port"] == 8080


def test_selectors_match_the_pods():
    objects = base_objects()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def matches(selector: dict[str, str]) -> bool:
        return selector.items() <= pod_labels.items()

    assert matches(deployment["spec"]["selector"]["matchLabels"])
    assert matches(objects["Service"]["spec"]["selector"])
    assert matches(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def pre_stop_seconds(container: dict[str, Any]) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", "the preStop hook keeps the pod serving, nothing else"
    return float(command[1])


def stop_budget_s(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> float:
    """The longest a stop of this container takes, from its settings (service/process/budget)."""
    from service.process.budget import shutdown_budget
    from service.settings import Settings

    for name, value in env(container).items():
        if name.startswith("DLWP_"):
            monkeypatch.setenv(name, value)
    return pre_stop_seconds(container) + shutdown_budget(Settings()).total_s


@pytest.mark.parametrize("where", ["deployment", "kserve"])
def test_a_stop_ends_well_before_the_grace_period(where, monkeypatch):
    if where == "deployment":
        deployment = base_objects()["Deployment"]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        serving = container(deployment)
    else:
        isvc = load(KSERVE / "inferenceservice.yaml")[0]["spec"]["predictor"]
        grace = isvc.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
        serving = load(KSERVE / "servingruntime.yaml")[0]["spec"]["containers"][0]

    took = stop_budget_s(serving, monkeypatch)

    assert pre_stop_seconds(serving) >= 5, "long enough for endpoints and balancers to follow"
    assert took + STOP_MARGIN_S <= grace, f"a stop takes up to {took:g} s of {grace} s"


def test_the_images_drain_fits_dockers_stop_timeout():
    image_drain = int(re.search(r"DLWP_DRAIN_SECONDS=(\d+)",  # type: ignore[union-attr]
                                (REPO / "Dockerfile").read_text()).group(1))  # fmt: skip

    # `docker stop` / `podman stop` wait 10 s before SIGKILL: the drain alone must fit.
    assert image_drain < 10


def test_pods_run_as_the_images_non_root_user_with_a_memory_limit():
    deployment = base_objects()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    runtime = load(KSERVE / "servingruntime.yaml")[0]["spec"]["containers"][0]
    image_user = re.search(r"^USER (\d+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)

    assert image_user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(image_user.group(1))
    assert runtime["securityContext"]["runAsUser"] == int(image_user.group(1))
    # A read-only root file system needs a writable /tmp (metrics files, Keras' cache).
    if container(deployment)["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in {mount["mountPath"] for mount in container(deployment)["volumeMounts"]}
    for resources in (container(deployment)["resources"], runtime["resources"]):
        assert "memory" in resources["limits"]
        assert resources["requests"]["cpu"]


def test_kserve_runtime_serves_the_whole_repository_from_mnt_models():
    runtime = load(KSERVE / "servingruntime.yaml")[0]
    isvc = load(KSERVE / "inferenceservice.yaml")[0]
    (server,) = runtime["spec"]["containers"]
    model = isvc["spec"]["predictor"]["model"]

    assert server["name"] == "kserve-container"
    assert env(server)["DLWP_MODELS_DIR"] == "/mnt/models"
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    # The committed repository has the layout the storage initializer must reproduce.
    # (Dot folders are not models: `.dlwp-state`, where a local `dlwp serve` keeps its state.)
    assert all((folder / "1" / "manifest.json").is_file() for folder in COMMITTED_MODELS.iterdir()
               if folder.is_dir() and not folder.name.startswith("."))  # fmt: skip


def test_gpu_overlay_asks_for_a_gpu_and_the_cuda_image():
    deployment = next(obj for obj in kustomize("gpu") if obj["kind"] == "Deployment")
    pod = container(deployment)

    assert pod["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["image"].endswith(":cuda")


def test_models_volume_overlay_mounts_the_repository_read_only_where_the_image_looks():
    deployment = next(obj for obj in kustomize("models-volume") if obj["kind"] == "Deployment")
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    image_models = re.search(r"DLWP_MODELS_DIR=(\S+)", (REPO / "Dockerfile").read_text())

    assert image_models is not None
    assert mounts[image_models.group(1)]["readOnly"] is True


@pytest.mark.parametrize("where", ["base", "gpu", "models-volume", "kserve"])
def test_the_api_key_comes_from_a_secret_and_control_is_off_without_one(where):
    if where == "kserve":
        server = load(KSERVE / "servingruntime.yaml")[0]["spec"]["containers"][0]
    elif where == "base":
        server = container(base_objects()["Deployment"])
    else:
        server = container(next(obj for obj in kustomize(where) if obj["kind"] == "Deployment"))

    reference = env_sources(server)["DLWP_API_KEY"]["secretKeyRef"]

    assert "DLWP_API_KEY" not in env(server), "never a key written into a manifest"
    assert (reference["name"], reference["key"]) == ("dlwp-api-key", "api-key")
    # Without the Secret the pod still starts, with control off (it listens beyond loopback).
    assert reference.get("optional") is True
    assert "DLWP_HOST=0.0.0.0" in (REPO / "Dockerfile").read_text()


def test_the_image_says_how_to_turn_control_on():
    dockerfile = (REPO / "Dockerfile").read_text()

    assert "DLWP_API_KEY" in dockerfile and "Authorization: Bearer" in dockerfile
