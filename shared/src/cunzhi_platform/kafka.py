"""Kafka plumbing: the FastStream broker, the relay's producer, and explicit topic creation.

Decision: the services create their topics (and dead-letter twins) themselves — at start-up,
every ``topic_check_interval_s`` and whenever the broker says one is missing — rather than
leaving it to Strimzi ``KafkaTopic`` resources: the embedded Tansu has no operator, and a
broker that lost its data (Tansu's memory engine after a restart) must get the topics back,
with the right partitions, before anything is published or consumed again. Partitions,
replication factor and topic configs are settings; every creation is checked, and only "it
already exists" is accepted.

No client of ours ever asks the broker to create a topic by looking it up. aiokafka sends
every metadata request with ``allow_auto_topic_creation`` (no setting turns it off), and Tansu
obliges with 4 partitions: after a broker restart the first consumer to reconnect recreated a
service's topic with the wrong partition count, and the relay's writes to partitions 4 and 5
were acknowledged and lost.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiokafka.admin.client
import aiokafka.client
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    InvalidTopicError,
    KafkaError,
    UnknownError,
    UnsupportedVersionError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from faststream.kafka import KafkaBroker
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from .envelope import dlq_for
from .infra import InfrastructureError
from .settings import Settings

_log = structlog.get_logger(__name__)
_TOPIC_ALREADY_EXISTS = 36
_REQUEST_TIMEOUT_MS = 10_000


class _LookUpOnly(MetadataRequest):  # type: ignore[misc]  # aiokafka is untyped
    """A metadata request that never creates the topics it asks about."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False
    ) -> None:
        super().__init__(topics, allow_auto_topic_creation)


aiokafka.client.MetadataRequest = _LookUpOnly
aiokafka.admin.client.MetadataRequest = _LookUpOnly


@dataclass(frozen=True)
class KafkaAccess:
    """Where the brokers are and how a client proves who it is (the ``kafka_*`` settings).

    Every client the platform and the CLI build takes its options from here, so one setting
    secures them all. A bare ``host:port`` string, where a function accepts one, is a
    plaintext listener: the embedded broker on loopback, and the tests.
    """

    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaAccess:
        if not settings.kafka_bootstrap_servers:
            raise InfrastructureError("CUNZHI_KAFKA_BOOTSTRAP_SERVERS is not set")
        password = settings.kafka_sasl_password
        return cls(
            settings.kafka_bootstrap_servers,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password else None,
            ssl_ca_file=settings.kafka_ssl_ca_file,
            ssl_cert_file=settings.kafka_ssl_cert_file,
            ssl_key_file=settings.kafka_ssl_key_file,
        )

    @classmethod
    def of(cls, target: KafkaAccess | str) -> KafkaAccess:
        return target if isinstance(target, KafkaAccess) else cls(target)

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_ca_file, certfile=self.ssl_cert_file, keyfile=self.ssl_key_file
        )
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def faststream_security(self) -> BaseSecurity | None:
        """The same options as FastStream's broker takes them (it maps them back to aiokafka's)."""
        if self.sasl:
            kind = {
                "SCRAM-SHA-512": SASLScram512,
                "SCRAM-SHA-256": SASLScram256,
                "PLAIN": SASLPlaintext,
            }[self.sasl_mechanism]
            return kind(
                self.sasl_username or "",
                self.sasl_password or "",
                ssl_context=self.ssl_context(),
                use_ssl=self.tls,
            )
        if self.tls:
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        return None


class TopicError(InfrastructureError):
    """A topic the broker refused to create (not "already exists"); the message says why.

    ``permanent`` when no one can fix it but by renaming the topic (an invalid name).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class TopicPlan:
    """How the services' topics are created (see the ``topic_*`` settings)."""

    partitions: int = 6
    # None: min(3, brokers in the cluster).
    replication_factor: int | None = None
    configs: Mapping[str, str] = field(default_factory=dict)
    dlq_retention_ms: int = 365 * 24 * 3600 * 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicPlan:
        return cls(
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            configs=dict(settings.topic_configs),
            dlq_retention_ms=settings.dlq_retention_ms,
        )

    def new_topic(self, name: str, brokers: int, *, dead_letters: bool) -> NewTopic:
        configs = dict(self.configs)
        if dead_letters:
            configs["retention.ms"] = str(self.dlq_retention_ms)
        return NewTopic(
            name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor or min(3, max(brokers, 1)),
            topic_configs=configs,
        )


def make_broker(kafka: KafkaAccess | str, *, client_id: str) -> KafkaBroker:
    """The FastStream broker of a service's consumers (and their dead letters)."""
    access = KafkaAccess.of(kafka)
    return KafkaBroker(
        access.bootstrap_servers,
        security=access.faststream_security(),
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=_REQUEST_TIMEOUT_MS,
        # Consumers notice a topic that was recreated (a broker that lost its data) this soon.
        metadata_max_age_ms=10_000,
        # What FastStream catches itself is logged through structlog, not dropped; its
        # per-message "Received"/"Processed" lines are DEBUG.
        logger=structlog.get_logger("faststream"),
        log_level=logging.DEBUG,
        # FastStream otherwise adds a random `correlation_id` header to every send; the
        # conversation's id travels in `ce_correlationid`, and one id is all a reader needs.
        id_generator=_no_correlation_id,
    )


def _no_correlation_id() -> str:
    return ""


async def start_producer(
    kafka: KafkaAccess | str,
    *,
    client_id: str,
    idempotence: Literal["auto", "required", "off"] = "auto",
) -> AIOKafkaProducer:
    """The relay's producer: ``acks=all``, idempotent where the broker supports it."""
    access = KafkaAccess.of(kafka)
    options: dict[str, Any] = {
        "client_id": client_id,
        "acks": "all",
        # A little lingering lets the relay's batch share produce requests.
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": _REQUEST_TIMEOUT_MS,
    }
    if idempotence != "off":
        producer = AIOKafkaProducer(**access.client_options(), **options, enable_idempotence=True)
        try:
            await producer.start()
            return producer
        except (UnknownError, UnsupportedVersionError, IncompatibleBrokerVersion) as exc:
            await producer.stop()
            if idempotence == "required":
                raise InfrastructureError(
                    f"the broker at {access.bootstrap_servers} refuses an idempotent producer "
                    f"({exc!r}) and CUNZHI_KAFKA_IDEMPOTENCE is 'required'"
                ) from exc
            _log.warning("kafka_idempotent_producer_unsupported", error=repr(exc))
    producer = AIOKafkaProducer(**access.client_options(), **options)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def end_offsets(
    kafka: KafkaAccess | str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """The next offset of each partition (how far the broker's log goes)."""
    consumer = AIOKafkaConsumer(
        **KafkaAccess.of(kafka).client_options(),
        enable_auto_commit=False,
        request_timeout_ms=_REQUEST_TIMEOUT_MS,
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def is_idempotent(producer: AIOKafkaProducer) -> bool:
    return producer._txn_manager is not None  # aiokafka keeps it only for idempotence


async def partition_counts(client: AIOKafkaClient, topics: Iterable[str]) -> dict[str, int]:
    """Partitions of each topic that exists now, asking the broker (never its cache)."""
    node = client.get_random_node()
    if node is None:
        raise KafkaError("no broker known")
    response = await client.send(node, _LookUpOnly(sorted(set(topics))))
    return {
        t["topic"]: len(t["partitions"])
        for t in response.to_object()["topics"]
        if t["error_code"] == 0 and t["partitions"]
    }


async def ensure_topics(
    kafka: KafkaAccess | str,
    topics: Iterable[str],
    plan: TopicPlan | None = None,
    *,
    partitions: int | None = None,
    with_dlq: bool = True,
) -> list[str]:
    """Create the topics (and their ``.dlq`` twins) that do not exist; returns those this call
    created (not those a racing instance created first).

    Raises ``TopicError`` for any refusal other than "already exists" (a replication factor
    above the brokers, a policy, authorisation), so a misconfiguration fails loudly.
    """
    plan = plan or TopicPlan(partitions=partitions or 6)
    wanted: dict[str, bool] = {}
    for topic in topics:
        wanted[topic] = False
        if with_dlq:
            wanted[dlq_for(topic)] = True
    access = KafkaAccess.of(kafka)
    admin = AIOKafkaAdminClient(**access.client_options(), request_timeout_ms=_REQUEST_TIMEOUT_MS)
    await admin.start()
    try:
        existing = await partition_counts(admin._client, wanted)
        for name, count in existing.items():
            if count != plan.partitions:
                _log.warning(
                    "kafka_topic_partitions_differ",
                    topic=name,
                    partitions=count,
                    configured=plan.partitions,
                )
        missing = sorted(n for n in wanted if n not in existing)
        if not missing:
            return []
        brokers = len(admin._client.cluster.brokers())
        response = await admin.create_topics(
            [plan.new_topic(n, brokers, dead_letters=wanted[n]) for n in missing]
        )
        # (topic, error_code[, error_message]) depending on the protocol version.
        refused = [e for e in response.topic_errors if e[1] not in (0, _TOPIC_ALREADY_EXISTS)]
        if refused:
            reasons = "; ".join(
                f"{e[0]}: {for_code(e[1]).__name__} ({e[2] if len(e) > 2 else ''})" for e in refused
            )
            raise TopicError(
                f"Kafka at {access.bootstrap_servers} refused to create topics: {reasons} "
                "(see CUNZHI_TOPIC_PARTITIONS, CUNZHI_TOPIC_REPLICATION_FACTOR, "
                "CUNZHI_TOPIC_CONFIGS)",
                permanent=all(e[1] == InvalidTopicError.errno for e in refused),
            )
        created = [e[0] for e in response.topic_errors if e[1] == 0]
        _log.info("kafka_topics_created", topics=created, partitions=plan.partitions)
        return created
    finally:
        await admin.close()
