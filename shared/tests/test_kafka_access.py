"""The ``kafka_*`` settings become the options of every Kafka client the platform builds."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
from cunzhi_platform.kafka import KafkaAccess
from cunzhi_platform.settings import Settings
from faststream.kafka.security import parse_security
from pydantic import ValidationError

ROOT = Path(__file__).parents[2]
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "KafkaBroker"}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> Path:
    """A self-signed CA certificate, as Strimzi's cluster CA secret holds one."""
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=cunzhi-test-ca", "-keyout", str(folder / "ca.key"),
            "-out", str(folder / "ca.crt"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return folder / "ca.crt"


def settings(**env: object) -> Settings:
    return Settings(kafka_bootstrap_servers="kafka-0:9093,kafka-1:9093", **env)  # type: ignore[arg-type]


def test_the_default_is_a_plain_listener_with_nothing_else() -> None:
    access = KafkaAccess.from_settings(settings())
    assert access.client_options() == {
        "bootstrap_servers": "kafka-0:9093,kafka-1:9093",
        "security_protocol": "PLAINTEXT",
    }
    assert access.faststream_security() is None
    assert KafkaAccess.of("127.0.0.1:9092").client_options()["security_protocol"] == "PLAINTEXT"


def test_scram_over_tls_gives_aiokafka_the_mechanism_the_principal_and_the_cluster_ca(
    ca_file: Path,
) -> None:
    access = KafkaAccess.from_settings(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="cunzhi-topics",
            kafka_sasl_password="s3cret",
            kafka_ssl_ca_file=ca_file,
        )
    )
    options = access.client_options()
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "kafka-0:9093,kafka-1:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cunzhi-topics",
        "sasl_plain_password": "s3cret",
    }
    # The cluster CA is what the context trusts (not the system's store).
    (trusted,) = context.get_ca_certs()
    assert dict(x[0] for x in trusted["subject"])["commonName"] == "cunzhi-test-ca"
    assert "s3cret" not in repr(access)

    # FastStream's broker maps its security object to the same aiokafka options.
    mapped = parse_security(access.faststream_security())
    assert mapped.pop("ssl_context") is not None
    assert mapped == {k: v for k, v in options.items() if k != "bootstrap_servers"}


def test_scram_on_a_plain_listener_and_sha_256() -> None:
    access = KafkaAccess.from_settings(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    options = access.client_options()
    assert "ssl_context" not in options
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert parse_security(access.faststream_security())["security_protocol"] == "SASL_PLAINTEXT"


def test_mutual_tls_presents_the_client_certificate(tmp_path: Path, ca_file: Path) -> None:
    key = ca_file.with_name("ca.key")
    access = KafkaAccess.from_settings(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_ca_file=ca_file,
            kafka_ssl_cert_file=ca_file,
            kafka_ssl_key_file=key,
        )
    )
    options = access.client_options()
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert options["ssl_context"] is not None
    assert parse_security(access.faststream_security())["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "CUNZHI_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
            "CUNZHI_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "CA"}, "KEY_FILE"),
        ({"kafka_ssl_ca_file": "CA"}, "CUNZHI_KAFKA_SECURITY_PROTOCOL=SSL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_ssl_ca_file": "/nowhere.crt"}, "ca_file"),
    ],
)
def test_incomplete_security_settings_are_refused_with_the_setting_named(
    env: dict[str, str], named: str, ca_file: Path
) -> None:
    env = {k: str(ca_file) if v == "CA" else v for k, v in env.items()}
    with pytest.raises(ValidationError, match=named):
        settings(**env)


def _constructor_calls(path: Path) -> list[tuple[int, str, ast.Call]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in CLIENTS:
                found.append((node.lineno, name, node))
    return found


def test_every_kafka_client_the_code_builds_takes_the_security_options() -> None:
    """Found in the sources, not listed: a client built with a bare address would connect
    without credentials and be refused by the cluster (or, worse, by its ACLs only later)."""
    built = []
    for path in sorted([*(ROOT / "shared" / "src").rglob("*.py"), *(ROOT / "src").rglob("*.py")]):
        for line, name, call in _constructor_calls(path):
            built.append(f"{path.name}:{line}")
            secured = any(
                (k.arg is None and "client_options" in ast.unparse(k.value)) or k.arg == "security"
                for k in call.keywords
            )
            assert secured, f"{path.relative_to(ROOT)}:{line} builds {name} without KafkaAccess"
    # The relay's producer, the consumers' broker, topic admin, end offsets, retention,
    # dead letters (list, replay), export and the simulation's probe.
    assert len(built) >= 9, built
