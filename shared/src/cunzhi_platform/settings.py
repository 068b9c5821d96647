"""Settings from the environment, prefixed ``CUNZHI_`` (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_JWT_SECRET = "change-me-in-production-this-is-only-for-the-demo"


class Settings(BaseSettings):
    """Everything a cunzhi process can be told. Empty infrastructure URLs mean "embedded"."""

    model_config = SettingsConfigDict(env_prefix="CUNZHI_", extra="ignore")

    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    data_dir: Path = Path(".cunzhi")
    # Embedded infrastructure's ports; 0: the ones kept in <data_dir>/ports.json, chosen free
    # the first time.
    embedded_postgres_port: int = Field(default=0, ge=0, le=65535)
    embedded_kafka_port: int = Field(default=0, ge=0, le=65535)
    # Topics are created by the services (start-up, then every ``topic_check_interval_s`` and
    # whenever the broker says one is missing), with these partitions, replication and configs.
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    # Empty: min(3, brokers in the cluster): 1 on the embedded Tansu, 3 on a 3-broker cluster.
    topic_replication_factor: int | None = Field(default=None, ge=1, le=10)
    # Topic configs for the event topics, as JSON ({"min.insync.replicas": "2"}); empty keeps
    # the broker's defaults.
    topic_configs: dict[str, str] = {}
    # Dead letters wait for a person: they are kept far longer than the events (a year).
    dlq_retention_ms: int = Field(default=365 * 24 * 3600 * 1000, ge=3600 * 1000)
    topic_check_interval_s: float = Field(default=10.0, gt=0, le=3600)
    # "auto": idempotent producer where the broker supports it (Apache Kafka; Tansu 0.6 does
    # not, and then the relay says so and goes on without); "required" fails start-up instead.
    kafka_idempotence: Literal["auto", "required", "off"] = "auto"
    # How every Kafka client of a process (relay, consumers, admin, dead letters, the CLI's
    # export and dlq) proves who it is: one principal per service, whose ACLs allow its own
    # topic and what it consumes (deploy/k8s/kafka-users.yaml). PLAINTEXT is the embedded
    # broker on loopback.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The CA that signed the brokers' certificates (Strimzi: the cluster CA's ca.crt); empty
    # trusts the system's CAs.
    kafka_ssl_ca_file: FilePath | None = None
    # A client certificate and its key, for mutual TLS instead of SASL.
    kafka_ssl_cert_file: FilePath | None = None
    kafka_ssl_key_file: FilePath | None = None
    jwt_secret: str = DEMO_JWT_SECRET
    jwt_algorithm: str = "HS256"
    jwt_audience: str = "cunzhi"
    # When set, tokens must name this issuer (``iss``).
    jwt_issuer: str | None = None
    # The county this deployment serves; when set, every token's ``county_id`` must match.
    county_id: str | None = None
    # Largest request body (bytes), refused with 413 before it is read; a roster file of a
    # few thousand members fits.
    http_max_body_bytes: int = 2_000_000
    # False when the relay runs as its own process (python -m cunzhi_platform relay).
    relay_in_process: bool = True
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 1.0
    # /readyz is not ready while events wait and the outbox has not moved for this long.
    relay_max_lag_s: float = Field(default=60.0, gt=0)
    # A relay or timer leader cut off from PostgreSQL loses its lock (and a standby takes
    # over) within about this long: TCP keepalives and user timeout on the leader's connection.
    leadership_timeout_s: float = Field(default=10.0, ge=2, le=600)
    consumer_max_retries: int = 3
    # Tansu makes a joining member wait about half the session timeout; the embedded demo and
    # the tests shorten it. Apache Kafka refuses less than its group.min.session.timeout.ms.
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 3_000
    # How long a fetch may wait for data: the floor of the latency from append to read model
    # when the broker answers only at the deadline (Tansu does); each idle consumer then polls
    # this often.
    consumer_fetch_max_wait_ms: int = 100
    # How often timers (calls for topics opening and closing, forum notices) look at the clock.
    scheduler_interval_s: float = 30.0
    # Processed-event marks are kept this long: it must exceed the topics' retention.ms.
    processed_retention_days: int = Field(default=30, ge=1, le=3650)
    # Sent outbox rows are kept this long for inspection (the events table is the log).
    outbox_retention_hours: int = Field(default=24, ge=0, le=24 * 365)
    # Idempotency-Key answers are remembered this long (a retry later runs the command again).
    idempotency_retention_hours: int = Field(default=24, ge=1, le=24 * 365)
    housekeeping_interval_s: float = Field(default=3600.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 0

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError(
                "CUNZHI_DATABASE_URL must look like postgresql://user:password@host:port/db"
            )
        return value or None

    @model_validator(mode="after")
    def _kafka_credentials(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"CUNZHI_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "CUNZHI_KAFKA_SASL_USERNAME and CUNZHI_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("CUNZHI_KAFKA_SSL_CERT_FILE and CUNZHI_KAFKA_SSL_KEY_FILE go together")
        tls_files = self.kafka_ssl_ca_file or self.kafka_ssl_cert_file
        if tls_files and not self.kafka_security_protocol.endswith("SSL"):
            raise ValueError(
                "CUNZHI_KAFKA_SSL_* files need CUNZHI_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        return self

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        if not value:
            return None
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(
                    f"CUNZHI_KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port…], got {server!r}"
                )
        return value
