"""``cunzhi export``: every event of every service as Parquet tables for analysts.

One table per event type (``<root>/<service>/<EventType>/month=YYYY-MM/*.parquet``, columns in
``columns``), incremental: the manifest beside the files keeps each service's high-water mark,
and a run writes only what came after it (``files`` says how a crash is survived).

Two sources. The event store (the default) is read with ``EventStore.read_all``, in its
commit-safe order: a transaction still running is left for the next run, never skipped, and
every event comes once. The Kafka topics (``--from-kafka``) carry each event at least once (a
relay that restarts, ``cunzhi republish``); an event is kept once by its identity — its stream
and version, which the producer's per-key order makes increase, so only the last version of each
stream is kept in the manifest, not every event id (events published before ``ce_streamversion``
was carried are remembered by their id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.envelope import Envelope, EnvelopeError, topic_for
from cunzhi_platform.events import Event, EventRegistry, InvalidEventPayload, UnknownEventType
from cunzhi_platform.eventstore import Checkpoint, EventStore, StoredEvent
from cunzhi_platform.kafka import KafkaAccess

from .columns import TableSpec, table_spec
from .files import ExportError, Manifest, PartitionedWriter, exclusive

__all__ = ["ExportError", "ServiceEvents", "export_from_kafka", "export_from_store"]


_log = structlog.get_logger(__name__)
Progress = Callable[[str, int], None]
"""Told the service and how many of its events the run has exported so far, page by page."""

MAX_IDLE_POLLS = 60
"""Polls of one second without a record, short of the ends, before the run gives up."""


@dataclass(frozen=True)
class ServiceEvents:
    """A service's events to export: its folder name, registry, store schema and topic."""

    name: str
    registry: EventRegistry
    schema: str = ""
    topic: str = ""

    @classmethod
    def of(cls, name: str, registry: EventRegistry) -> ServiceEvents:
        return cls(name, registry, name, topic_for(name))


class _Export:
    """One run: the manifest read at the start, a writer per commit, the manifest written last."""

    def __init__(
        self, root: Path, source: str, services: Sequence[ServiceEvents], **writer: int
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.manifest = Manifest.load(root, source)
        self.manifest.sweep(root, [s.name for s in services])
        self.writer_options = writer
        self.writer = PartitionedWriter(root, **writer)
        self.tables = {
            s.name: {n: table_spec(s.name, s.registry.model(n)) for n in s.registry.names()}
            for s in services
        }
        self.described = {
            s.name: [(t, _summary(s.registry.model(n))) for n, t in self.tables[s.name].items()]
            for s in services
        }

    def add(self, service: str, envelope: Envelope, event: Event, position: int | None) -> None:
        table: TableSpec = self.tables[service][envelope.type]
        self.writer.add(table, table.row(envelope, event, position))

    def add_all(self, service: str, events: Sequence[StoredEvent]) -> None:
        for e in events:
            self.add(service, e.envelope, e.event, e.position)

    def commit(self, service: str, mark: Any) -> None:
        """Files first, then the manifest naming them with the new mark."""
        self.manifest.files.update(self.writer.finish())
        missing = [
            table
            for table in self.tables[service].values()
            if not any(f.startswith(f"{service}/{table.name}/") for f in self.manifest.files)
        ]
        if missing:
            empty = PartitionedWriter(self.root)
            for table in missing:
                empty.empty(table)
            self.manifest.files.update(empty.finish())
        self.manifest.marks[service] = mark
        self.manifest.save(self.root)
        self.manifest.write_views(self.root)
        self.manifest.write_sources(self.root, self.described)
        self.writer = PartitionedWriter(self.root, **self.writer_options)


def _summary(model: type[Event]) -> str:
    return (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")


async def export_from_store(
    pool: asyncpg.Pool,
    root: Path,
    services: Sequence[ServiceEvents],
    *,
    page: int = 2000,
    commit_every: int = 500_000,
    progress: Progress | None = None,
    **writer: int,
) -> dict[str, int]:
    """Export what each service's event store holds beyond the manifest's checkpoint.

    Returns the number of events exported per service. A manifest is written every
    ``commit_every`` events too, so a long first run that dies keeps most of its work.
    """
    with exclusive(root):
        run = _Export(root, "store", services, **writer)
        exported: dict[str, int] = {}
        for service in services:
            store = EventStore(pool, service.schema, service.registry, SystemClock())
            after = Checkpoint(**run.manifest.marks.get(service.name, {}))
            count = since_commit = 0
            # The next page is fetched while this one is turned into rows.
            pending = asyncio.ensure_future(store.read_all(after, page))
            try:
                while events := await pending:
                    after = events[-1].checkpoint
                    pending = asyncio.ensure_future(store.read_all(after, page))
                    await asyncio.to_thread(run.add_all, service.name, events)
                    count += len(events)
                    if progress:
                        progress(service.name, count)
                    since_commit += len(events)
                    if since_commit >= commit_every:
                        await asyncio.to_thread(run.commit, service.name, _mark(after))
                        since_commit = 0
            finally:
                pending.cancel()
            await asyncio.to_thread(run.commit, service.name, _mark(after))
            exported[service.name] = count
    return exported


def _mark(after: Checkpoint) -> dict[str, int]:
    return {"tx_id": after.tx_id, "position": after.position}


async def export_from_kafka(
    kafka: KafkaAccess | str,
    root: Path,
    services: Sequence[ServiceEvents],
    *,
    page: int = 2000,
    progress: Progress | None = None,
    **writer: int,
) -> dict[str, int]:
    """Export what each service's topic holds beyond the manifest's offsets, up to the ends
    the topic had when the run started; each event once."""
    with exclusive(root):
        run = _Export(root, "kafka", services, **writer)
        exported: dict[str, int] = {}
        consumer = AIOKafkaConsumer(
            **KafkaAccess.of(kafka).client_options(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            # Every topic's partitions from the metadata start() fetched (all topics), before
            # the first assign(): from then on the client's metadata covers only the topics
            # assigned (topics() does not refresh it), and the next services' topics had no
            # partitions — nothing exported, and no error.
            partitions = {
                s.name: sorted(consumer.partitions_for_topic(s.topic) or ()) for s in services
            }
            for service in services:
                mark = run.manifest.marks.get(
                    service.name, {"offsets": {}, "streams": {}, "ids": []}
                )
                tps = [TopicPartition(service.topic, p) for p in partitions[service.name]]
                exported[service.name] = await _export_topic(
                    consumer, run, service, tps, mark, page, progress
                )
                await asyncio.to_thread(run.commit, service.name, mark)
        finally:
            await consumer.stop()
    return exported


async def _export_topic(
    consumer: AIOKafkaConsumer,
    run: _Export,
    service: ServiceEvents,
    tps: list[TopicPartition],
    mark: dict[str, Any],
    page: int,
    progress: Progress | None,
) -> int:
    offsets: dict[str, int] = mark["offsets"]
    streams: dict[str, int] = mark["streams"]
    ids: set[str] = set(mark["ids"])
    if not tps:
        return 0
    consumer.assign(tps)
    starts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        start = offsets.get(str(tp.partition), 0)
        if start < starts[tp]:
            # Retention removed records before they were exported: say so, go on from there.
            _log.warning(
                "export_records_expired",
                topic=service.topic,
                partition=tp.partition,
                first_missing=start,
                first_kept=starts[tp],
            )
        offsets[str(tp.partition)] = max(start, starts[tp])
        consumer.seek(tp, offsets[str(tp.partition)])
    reading = set(tps)
    count = idle = 0
    while reading:
        batch = await consumer.getmany(*reading, timeout_ms=1000, max_records=page)
        for tp, records in batch.items():
            count += await asyncio.to_thread(_add_new, records, service, streams, ids, run)
            offsets[str(tp.partition)] = records[-1].offset + 1
            if progress:
                progress(service.name, count)
        # At the end the run started with, a partition is done once a poll brings nothing: the
        # end offset Tansu reports can fall short of its last record batch (more records are
        # exported then, never fewer).
        short = {tp for tp in reading if offsets[str(tp.partition)] < ends[tp]}
        reading = short | {tp for tp in reading if tp in batch}
        idle = 0 if batch or not short else idle + 1
        if idle > MAX_IDLE_POLLS:
            raise ExportError(
                f"{service.topic}: no record came for {idle} s before the end offsets "
                f"{ {tp.partition: ends[tp] for tp in short} }; is the broker answering?"
            )
    mark["ids"] = sorted(ids)
    return count


def _add_new(
    records: list[ConsumerRecord[bytes, bytes]],
    service: ServiceEvents,
    streams: dict[str, int],
    ids: set[str],
    run: _Export,
) -> int:
    """Export the records' events that no earlier copy brought; how many."""
    return sum(_new(r, service, streams, ids, run) for r in records)


def _new(
    record: ConsumerRecord[bytes, bytes],
    service: ServiceEvents,
    streams: dict[str, int],
    ids: set[str],
    run: _Export,
) -> bool:
    """Export the record's event unless an earlier copy was; whether it was new.

    A record that is no event of the service (bad headers, an unknown type or version, a payload
    that does not validate: what consumers dead-letter) is skipped with a warning: the topic
    is not the source of truth, the event store is.
    """
    try:
        envelope = Envelope.from_headers(record.headers)
        event = service.registry.decode_json(
            envelope.type, envelope.schema_version, record.value or b""
        )
    except (EnvelopeError, UnknownEventType, InvalidEventPayload) as exc:
        _log.warning(
            "export_record_skipped",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=str(exc)[:300],
        )
        return False
    version = envelope.stream_version
    if version is None:
        if envelope.id in ids:
            return False
        ids.add(envelope.id)
    else:
        if version <= streams.get(envelope.subject, 0) or envelope.id in ids:
            return False
        streams[envelope.subject] = version
    run.add(service.name, envelope, event, None)
    return True
