"""deploy/ checked offline against the published schemas.

- Kubernetes manifests: ``kubernetes-validate`` (the Kubernetes OpenAPI schemas as JSON Schema,
  bundled per version), strict, so an unknown or misspelt field fails too.
- Compose file: the Compose specification's JSON Schema as vendored by ``check-jsonschema``.
- Custom resources (Strimzi ``Kafka``/``KafkaNodePool``, CloudNativePG ``Cluster``) have no
  bundled schema: they are only checked to be custom resources of the operators we name, with
  metadata and a spec; their CRDs would validate them on the cluster (``kubectl apply
  --dry-run=server``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).parents[1] / "deploy"
KUBERNETES = "1.31"
"""The oldest Kubernetes the manifests promise to run on (an API removed later would fail)."""
OPERATORS = {"kafka.strimzi.io/v1beta2", "postgresql.cnpg.io/v1"}
"""Custom resources: validated by their operators' CRDs on the cluster, not here."""


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    built_in = 0
    for name, doc in manifests():
        if doc["apiVersion"] in OPERATORS:
            assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "cunzhi", name
            assert isinstance(doc["spec"], dict), name
            continue
        for version in (KUBERNETES, kubernetes_validate.utils.latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)
        built_in += 1
    assert built_in >= 5


def test_the_validator_refuses_a_misspelt_field() -> None:
    deployment = next(d for _, d in manifests() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**container, "readinessProbe": {"httpGett": {"path": "/readyz", "port": 8000}}}
    spec = {**deployment["spec"]["template"]["spec"], "containers": [broken]}
    template = {**deployment["spec"]["template"], "spec": spec}
    wrong = {**deployment, "spec": {**deployment["spec"], "template": template}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES, strict=True)


def test_every_service_runs_in_kubernetes_and_compose_from_the_one_image() -> None:
    deployments = {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == "Deployment"}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for service in ("topics", "meetings", "rectification", "notifications"):
        (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == [f"cunzhi-{service}"]
        assert compose[service]["command"] == [f"cunzhi-{service}"]
        assert compose[service]["build"]["dockerfile"] == "deploy/Dockerfile"


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    checked = check_compose(DEPLOY / "compose.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    wrong = tmp_path / "compose.yaml"
    text = (DEPLOY / "compose.yaml").read_text()
    wrong.write_text(text.replace("restart: unless-stopped", "restart: [unless-stopped]"))
    refused = check_compose(wrong)
    assert refused.returncode == 1, refused.stdout + refused.stderr


def test_prometheus_on_one_host_scrapes_every_service_and_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    ours = {name for name, s in compose.items() if "build" in s}
    config = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = {t for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:8000" for name in ours}
    for name, service in compose.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), f"{name} mounts {source}, which is missing"
    rules = Path(config["rule_files"][0]).name
    assert (DEPLOY / "monitoring" / rules).is_file()
