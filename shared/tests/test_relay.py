"""Outbox → Kafka: headers, per-key order, a relay killed mid-batch, a broker paused."""

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict

import pytest
from counting import Incremented, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.infra import EmbeddedTansu
from cunzhi_platform.kafka import ensure_topics
from cunzhi_platform.migrations import migrate
from cunzhi_platform.relay import OutboxRelay
from cunzhi_platform.testing import consume, eventually

pytestmark = pytest.mark.slow


async def make_store(pool, schema, bootstrap):
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
    await ensure_topics(bootstrap, [topic_for(schema)], partitions=6)
    return EventStore(pool, schema, registry, SystemClock())


async def append_many(store, streams: int, per_stream: int, concurrency: int = 16) -> None:
    queue = asyncio.Queue()
    for s in range(streams):
        queue.put_nowait(s)

    async def worker():
        while not queue.empty():
            s = queue.get_nowait()
            for i in range(per_stream):
                await store.append(
                    f"counter:{s}", i, [Incremented(counter=str(s), amount=1, seq=i)]
                )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def unsent(store) -> int:
    return await store.pool.fetchval(
        f'SELECT count(*) FROM "{store.schema}".outbox WHERE sent_at IS NULL'
    )


def assert_every_event_once_in_order(records, expected_ids, partitions=6):
    """Dedupe by event id (at-least-once), then every key's events are in version order."""
    seen, per_key, partition_of = set(), defaultdict(list), {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        headers = dict(r.headers)
        event_id = headers["ce_id"].decode()
        key = r.key.decode()
        assert partition_of.setdefault(key, r.partition) == r.partition
        if event_id in seen:
            continue
        seen.add(event_id)
        per_key[key].append(Incremented.model_validate_json(r.value).seq)
    assert seen == expected_ids
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), key
    assert len(partition_of) > 1 and max(partition_of.values()) < partitions


async def test_ten_thousand_events_keep_per_key_order_and_cloudevents_headers(
    pool, schema, settings
):
    bootstrap = settings.kafka_bootstrap_servers
    store = await make_store(pool, schema, bootstrap)
    await append_many(store, streams=200, per_stream=50)
    ids = {str(r["event_id"]) for r in await pool.fetch(f'SELECT event_id FROM "{schema}".events')}
    assert len(ids) == 10_000

    relay = OutboxRelay(settings, schema)
    task = asyncio.create_task(relay.run())
    try:
        assert await eventually(lambda: _zero(store), timeout=120)
    finally:
        relay.stop()
        await task

    records = await consume(bootstrap, topic_for(schema), 10_000)
    assert len(records) == 10_000  # nothing published twice in a clean run
    assert_every_event_once_in_order(records, ids)
    headers = dict(records[0].headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"cunzhi.test.Incremented"
    assert headers["ce_source"] == f"/cunzhi/{schema}".encode()
    assert headers["ce_subject"] == records[0].key
    assert headers["ce_time"] and headers["ce_correlationid"]


async def _zero(store):
    return await unsent(store) == 0


def relay_process(schema, settings, batch_size=200):
    env = {
        **os.environ,
        "CUNZHI_DATABASE_URL": settings.database_url,
        "CUNZHI_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CUNZHI_RELAY_BATCH_SIZE": str(batch_size),
        "CUNZHI_RELAY_POLL_INTERVAL_S": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cunzhi_platform", "relay", "--service", schema],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_relay_killed_mid_batch_loses_nothing(pool, schema, settings):
    store = await make_store(pool, schema, settings.kafka_bootstrap_servers)
    await append_many(store, streams=60, per_stream=50)
    total = 3000
    ids = {str(r["event_id"]) for r in await pool.fetch(f'SELECT event_id FROM "{schema}".events')}

    first = relay_process(schema, settings)
    try:
        started = await eventually(lambda: _some_sent(store, total), timeout=60, interval=0.01)
        assert started
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait()
    assert 0 < await unsent(store) < total, "the relay must die with work left"

    second = relay_process(schema, settings)
    try:
        assert await eventually(lambda: _zero(store), timeout=60)
    finally:
        second.terminate()
        second.wait()
    records = await consume(settings.kafka_bootstrap_servers, topic_for(schema), total)
    assert_every_event_once_in_order(records, ids)


async def _some_sent(store, total):
    return await unsent(store) < total


async def test_broker_paused_while_publishing_loses_nothing(pool, schema, settings, tmp_path):
    # A broker of its own, so pausing it disturbs no other test.
    tansu = EmbeddedTansu(tmp_path)
    tansu.start()
    try:
        bootstrap = tansu.bootstrap_servers
        store = await make_store(pool, schema, bootstrap)
        relay = OutboxRelay(
            settings.model_copy(
                update={"kafka_bootstrap_servers": bootstrap, "relay_poll_interval_s": 0.1}
            ),
            schema,
            max_backoff_s=1,
        )
        task = asyncio.create_task(relay.run())
        try:
            await append_many(store, streams=20, per_stream=10)
            tansu.pause()
            # Appends go on while the broker is unreachable; the outbox holds them.
            writer = asyncio.create_task(_append_range(store, 20, 10, 30))
            await asyncio.sleep(3)
            assert await unsent(store) > 0
            tansu.resume()
            await writer
            assert await eventually(lambda: _zero(store), timeout=60)
        finally:
            relay.stop()
            await task
        ids = {
            str(r["event_id"]) for r in await pool.fetch(f'SELECT event_id FROM "{schema}".events')
        }
        assert len(ids) == 20 * 30
        records = await consume(bootstrap, topic_for(schema), len(ids))
        assert_every_event_once_in_order(records, ids)
    finally:
        tansu.stop()


async def _append_range(store, streams, start, end):
    for i in range(start, end):
        for s in range(streams):
            await store.append(f"counter:{s}", i, [Incremented(counter=str(s), amount=1, seq=i)])
