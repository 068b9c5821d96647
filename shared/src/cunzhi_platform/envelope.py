"""The CloudEvents 1.0 envelope of every event on Kafka (binary content mode).

Attributes travel in headers (``ce_id``, ``ce_type``…); the value is the event's JSON; the key
is the aggregate id, so one aggregate's events share a partition and stay in order. cunzhi's
extension attributes: ``ce_schemaversion``, ``ce_streamversion`` (the event's version in its
stream, so a consumer can see a gap), ``ce_correlationid``, ``ce_causationid``, ``ce_actor``
(CloudEvents extension names are lowercase alphanumerics).

``ce_dataschema`` (the CloudEvents attribute) names the JSON Schema of the payload by type and
version, ``urn:cunzhi:schema:<type>:v<version>`` (``dataschema_for``): a name that never moves
with a host or a folder; the schema is ``docs/events/<service>/<type>.v<version>.json``. It
follows from ``ce_type`` and ``ce_schemaversion``, so decoding reads those and ignores it (events
published before it was carried have none).

``ce_time`` is optional in CloudEvents. An event without it takes the time the caller passes
as ``received`` — a consumer passes the Kafka record's timestamp, which is the same on every
redelivery, so a projection that stores the time stays the same when rebuilt or replayed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


def dataschema_for(event_type: str, schema_version: int) -> str:
    """The stable URI of an event type's schema at a version (the ``dataschema`` attribute)."""
    return f"urn:cunzhi:schema:{event_type}:v{schema_version}"


class EnvelopeError(ValueError):
    """Headers that do not make a valid cunzhi CloudEvent."""


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    subject: str
    time: dt.datetime
    schema_version: int = 1
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None
    stream_version: int | None = None
    specversion: str = SPECVERSION

    @classmethod
    def new(
        cls,
        *,
        type: str,
        source: str,
        subject: str,
        time: dt.datetime,
        schema_version: int = 1,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        actor: str | None = None,
        id: str | None = None,
        stream_version: int | None = None,
    ) -> Envelope:
        event_id = id or str(uuid.uuid4())
        return cls(
            id=event_id,
            type=type,
            source=source,
            subject=subject,
            time=time,
            schema_version=schema_version,
            # A command starts a conversation: it is its own correlation.
            correlation_id=correlation_id or event_id,
            causation_id=causation_id,
            actor=actor,
            stream_version=stream_version,
        )

    @property
    def dataschema(self) -> str:
        return dataschema_for(self.type, self.schema_version)

    def caused(self, **changes: object) -> Envelope:
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_headers(self) -> list[tuple[str, bytes]]:
        headers = {
            "ce_specversion": self.specversion,
            "ce_id": self.id,
            "ce_type": self.type,
            "ce_source": self.source,
            "ce_subject": self.subject,
            "ce_time": self.time.isoformat(),
            "ce_schemaversion": str(self.schema_version),
            "ce_dataschema": self.dataschema,
            "content-type": CONTENT_TYPE,
        }
        for name, value in (
            ("ce_correlationid", self.correlation_id),
            ("ce_causationid", self.causation_id),
            ("ce_actor", self.actor),
        ):
            if value:
                headers[name] = value
        if self.stream_version is not None:
            headers["ce_streamversion"] = str(self.stream_version)
        return [(k, v.encode()) for k, v in headers.items()]

    def to_metadata(self) -> dict[str, str | None]:
        """What the event store keeps beside the payload."""
        return {
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "actor": self.actor,
            "source": self.source,
        }

    @classmethod
    def from_headers(
        cls,
        headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None],
        *,
        received: dt.datetime | None = None,
    ) -> Envelope:
        """The envelope in ``headers``; ``received`` stands for an absent ``ce_time``.

        A header without a value (Kafka allows it) counts as absent.
        """
        items = headers.items() if isinstance(headers, Mapping) else headers
        h: dict[str, str] = {}
        for key, value in items:
            if value is None:
                continue
            try:
                h[key] = value.decode() if isinstance(value, bytes | bytearray) else str(value)
            except UnicodeDecodeError as exc:
                raise EnvelopeError(f"header {key} is not UTF-8") from exc
        missing = [n for n in ("ce_id", "ce_type", "ce_source", "ce_specversion") if n not in h]
        if missing:
            raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
        if h["ce_specversion"] != SPECVERSION:
            raise EnvelopeError(f"unsupported CloudEvents specversion {h['ce_specversion']!r}")
        if "ce_time" in h:
            try:
                time = dt.datetime.fromisoformat(h["ce_time"])
            except ValueError as exc:
                raise EnvelopeError(f"ce_time is not an RFC 3339 time: {h['ce_time']!r}") from exc
        else:
            time = received or dt.datetime.now(dt.UTC)
        schema_version = _integer(h, "ce_schemaversion")
        return cls(
            id=h["ce_id"],
            type=h["ce_type"],
            source=h["ce_source"],
            subject=h.get("ce_subject", ""),
            time=time,
            schema_version=1 if schema_version is None else schema_version,
            correlation_id=h.get("ce_correlationid"),
            causation_id=h.get("ce_causationid"),
            actor=h.get("ce_actor"),
            stream_version=_integer(h, "ce_streamversion"),
        )


def _integer(headers: dict[str, str], name: str) -> int | None:
    if name not in headers:
        return None
    try:
        return int(headers[name])
    except ValueError:
        raise EnvelopeError(f"{name} is not an integer") from None


@dataclass(frozen=True)
class CommandContext:
    """Who asked, and in which conversation: becomes the envelope of the events appended."""

    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def topic_for(service: str) -> str:
    return f"cunzhi.{service}.events"


def dlq_for(topic: str) -> str:
    return f"{topic}.dlq"


def topic_owner(topic: str) -> str | None:
    """The service whose events ``topic`` carries (``cunzhi.<service>.events``), if any."""
    prefix, _, rest = topic.partition(".")
    service, _, suffix = rest.partition(".")
    return service if prefix == "cunzhi" and suffix == "events" and service else None


def foreign_source(envelope: Envelope, topic: str, consumed: Iterable[str]) -> str | None:
    """Why an event on ``topic`` cannot be its owner's, or None.

    Only a service's own principal may write its topic (deploy/k8s/kafka-users.yaml), so an
    event that names another producer there is forged (or misrouted): its ``source`` is
    another service's (``/cunzhi/<service>``), or its type belongs to another service whose
    topic the consumer reads (``cunzhi.<service>.<Name>``) — the types a consumer handles.
    """
    owner = topic_owner(topic)
    if owner is None:
        return None
    root, _, named = envelope.source.rpartition("/")
    if root == "/cunzhi" and named != owner:
        return f"source {envelope.source} on {topic}, which only {owner} writes"
    prefix, _, rest = envelope.type.partition(".")
    by = rest.partition(".")[0]
    readable = {topic_owner(t) for t in consumed}
    if prefix == "cunzhi" and by != owner and by in readable:
        return f"type {envelope.type} is {by}'s, on {topic}, which only {owner} writes"
    return None
