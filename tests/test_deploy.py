"""deploy/ checked offline against the published schemas.

- Kubernetes manifests: ``kubernetes-validate`` (the Kubernetes OpenAPI schemas as JSON Schema,
  bundled per version), strict, so an unknown or misspelt field fails too.
- Compose file: the Compose specification's JSON Schema as vendored by ``check-jsonschema``.
- Custom resources (Strimzi ``Kafka``/``KafkaNodePool``/``KafkaUser``, CloudNativePG
  ``Cluster``/``ScheduledBackup``) have no bundled schema: they are only checked to be custom
  resources of the operators we name, with metadata and a spec; their CRDs would validate them
  on the cluster (``kubectl apply --dry-run=server``). What they say is checked here: the
  ACLs against what each service's code produces and consumes.
- Policies: checkov's Kubernetes checks (Pod Security, resources, probes, network…) over every
  manifest, with the checks we skip listed below with the reason; and the "restricted" Pod
  Security profile, disruption budgets and spread asserted field by field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cunzhi_platform.envelope import dlq_for, topic_owner
from cunzhi_platform.runtime import service_topics

from cunzhi_cli.services import RUNNABLE

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


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def _allows(user: dict[str, Any], kind: str, name: str, operation: str) -> bool:
    """Strimzi's simple authorization: literal or prefix resource names, allow rules only."""
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != kind or acl.get("type", "allow") != "allow":
            continue
        if operation not in acl["operations"] and "All" not in acl["operations"]:
            continue
        if kind == "cluster":
            return True
        pattern = resource.get("patternType", "literal")
        if resource["name"] == "*" or (
            name.startswith(resource["name"]) if pattern == "prefix" else name == resource["name"]
        ):
            return True
    return False


def test_each_service_has_a_kafka_principal_allowed_what_its_code_does_and_no_more() -> None:
    """Derived from the services as they run: their topic, their consumers' subscriptions and
    consumer groups, the topics they create (runtime.service_topics)."""
    users = _by_kind("KafkaUser")
    every_topic = {topic for build in RUNNABLE.values() for topic in service_topics(build())}
    for name, build in RUNNABLE.items():
        service = build()
        user = users[f"cunzhi-{name}"]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "cunzhi"
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        read = {t for c in service.consumers for t in c.topics}
        needed = [(service.topic, "Write"), ("", "IdempotentWrite")]
        for topic in service_topics(service):
            needed += [(topic, "Create"), (topic, "Describe")]
            needed += [(dlq_for(topic), "Create"), (dlq_for(topic), "Describe")]
        for topic in read:
            needed += [(topic, "Read"), (topic, "DescribeConfigs"), (dlq_for(topic), "Write")]
        for topic, operation in needed:
            kind = "cluster" if operation == "IdempotentWrite" else "topic"
            assert _allows(user, kind, topic, operation), f"{name} may not {operation} {topic}"
        for consumer in service.consumers:
            group = f"cunzhi.{name}.{consumer.name}"  # ConsumerRunner's group id
            assert _allows(user, "group", group, "Read"), f"{name} may not join {group}"
        # Writes: its own topic and the dead letters of what it reads, nothing else.
        candidates = every_topic | {dlq_for(t) for t in every_topic}
        written = {t for t in candidates if _allows(user, "topic", t, "Write")}
        assert written == {service.topic} | {dlq_for(t) for t in read}, name
        assert not any(_allows(user, "topic", t, "Read") for t in every_topic - read), name
        assert not _allows(user, "group", "cunzhi.someone-else.x", "Read"), name
        assert {topic_owner(t) for t in written if topic_owner(t)} == {name}


def test_each_service_signs_in_as_its_own_principal_over_tls() -> None:
    kafka = _by_kind("Kafka")["cunzhi"]["spec"]["kafka"]
    assert kafka["authorization"]["type"] == "simple"
    (listener,) = kafka["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    config = _by_kind("ConfigMap")["cunzhi"]["data"]
    assert config["CUNZHI_KAFKA_BOOTSTRAP_SERVERS"].endswith(f":{listener['port']}")
    assert config["CUNZHI_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["CUNZHI_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    users = _by_kind("KafkaUser")
    for name, deployment in _by_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        user = env["CUNZHI_KAFKA_SASL_USERNAME"]["value"]
        assert user == f"cunzhi-{name}" and user in users
        secret = env["CUNZHI_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": user, "key": "password"}  # the User Operator's Secret
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        ca = Path(config["CUNZHI_KAFKA_SSL_CA_FILE"])
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(ca.parent)])
        assert volume["secret"]["secretName"] == "cunzhi-cluster-ca-cert"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": ca.name}]


def test_service_pods_meet_the_restricted_profile_and_survive_a_drain() -> None:
    budgets = _by_kind("PodDisruptionBudget")
    namespace = _by_kind("Namespace")["cunzhi"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, deployment in _by_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True
            assert ":" in container["image"].rsplit("/", 1)[-1]
            assert not container["image"].endswith(":latest")
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == {"app": name}
        assert budgets[name]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
        spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
        assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == {"app": name}
        assert labels["app.kubernetes.io/part-of"] == "cunzhi"  # the network policies' selector


def test_the_event_store_replicates_synchronously_and_is_backed_up_every_night() -> None:
    cluster = _by_kind("Cluster")["cunzhi-db"]["spec"]
    assert cluster["instances"] >= 3
    assert cluster["postgresql"]["synchronous"]["number"] >= 1
    assert cluster["resources"]["requests"] and cluster["resources"]["limits"]["memory"]
    store = cluster["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    credentials = store["s3Credentials"]
    assert {c["name"] for c in credentials.values()} == {"cunzhi-backup-s3"}
    (scheduled,) = _by_kind("ScheduledBackup").values()
    assert scheduled["spec"]["cluster"]["name"] == "cunzhi-db"
    assert len(scheduled["spec"]["schedule"].split()) == 6  # CloudNativePG: seconds first
    pool = _by_kind("KafkaNodePool")["brokers"]["spec"]
    assert pool["resources"]["requests"] and pool["resources"]["limits"]["memory"]
    kafka = _by_kind("Kafka")["cunzhi"]["spec"]
    assert kafka["entityOperator"]["userOperator"]["resources"]["limits"]
    assert kafka["kafkaExporter"]["resources"]["limits"]


def test_services_reach_only_the_database_kafka_dns_and_notifications_its_providers() -> None:
    policies = _by_kind("NetworkPolicy")
    deny = policies["services-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    assert "egress" not in deny
    egress = policies["services-egress"]["spec"]["egress"]
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    kafka_port = _by_kind("Kafka")["cunzhi"]["spec"]["kafka"]["listeners"][0]["port"]
    assert ports == sorted([5432, kafka_port, 53, 53])
    providers = policies["notifications-providers"]["spec"]
    assert providers["podSelector"] == {"matchLabels": {"app": "notifications"}}
    assert {p["port"] for r in providers["egress"] for p in r["ports"]} == {443, 465, 587}


CHECKOV_SKIPPED = {
    "CKV_K8S_15": "imagePullPolicy Always: every tag is a build of its own (never reused), so "
    "IfNotPresent is exact, and a restart does not depend on the registry (a county intranet)",
    "CKV_K8S_35": "secrets as files: the settings are environment variables (pydantic-settings); "
    "the Kafka CA, a file, is mounted as one",
    "CKV_K8S_43": "image by digest: the digest exists only once the operator has built and "
    "pushed the image; deploy/README.md says to deploy by digest",
}
"""checkov's Kubernetes checks we do not apply, with the reason."""


def test_checkov_finds_nothing_in_the_manifests_but_what_we_skip(tmp_path: Path) -> None:
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    # The same Deployment with its hardening taken away: proves the checks run and can fail.
    topics = _by_kind("Deployment")["topics"]
    loose = json.loads(json.dumps(topics))
    loose["metadata"] = {"name": "loose", "namespace": "cunzhi"}
    (container,) = loose["spec"]["template"]["spec"]["containers"]
    del container["securityContext"], container["resources"], container["readinessProbe"]
    (tmp_path / "loose.yaml").write_text(yaml.safe_dump(loose))
    ran = subprocess.run(
        [
            str(Path(sys.executable).with_name("checkov")),
            *("--directory", str(tmp_path), "--framework", "kubernetes"),
            *("--output", "json", "--quiet", "--compact", "--skip-download"),
            *("--skip-check", ",".join(CHECKOV_SKIPPED)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    report = json.loads(ran.stdout)
    results = report["results"]
    failed = {(f["check_id"], f["resource"]) for f in results["failed_checks"]}
    ours = {f for f in failed if not f[1].endswith(".loose")}
    assert ours == set(), ours
    assert {c for c, r in failed if r == "Deployment.cunzhi.loose"} >= {
        "CKV_K8S_20",  # allowPrivilegeEscalation
        "CKV_K8S_22",  # read-only root
        "CKV_K8S_28",  # NET_RAW / capabilities
        "CKV_K8S_9",  # readiness probe
        "CKV_K8S_13",  # memory limit
    }
    assert report["summary"]["passed"] > 300
