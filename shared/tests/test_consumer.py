"""Consumers and projections on the real broker and database."""

import asyncio
import json
import uuid

import pytest
from counting import Incremented, Tallies, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import ConsumerRunner
from cunzhi_platform.envelope import Envelope, dlq_for, topic_for
from cunzhi_platform.infra import EmbeddedTansu
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.metrics import CONSUMED
from cunzhi_platform.rebuild import rebuild
from cunzhi_platform.republish import republish
from cunzhi_platform.runtime import Service
from cunzhi_platform.testing import consume, eventually, running

pytestmark = pytest.mark.slow


def counting_service(name: str, **tally_options) -> Service:
    return Service(name=name, registry=registry, consumers=[Tallies(name, **tally_options)])


async def tallies(pool, schema):
    rows = await pool.fetch(f'SELECT counter, total, increments FROM "{schema}".tallies ORDER BY 1')
    return {r["counter"]: (r["total"], r["increments"]) for r in rows}


async def append_increments(store, counter: str, amounts):
    version = await store.version(f"counter:{counter}")
    for i, amount in enumerate(amounts):
        await store.append(
            f"counter:{counter}", version + i, [Incremented(counter=counter, amount=amount, seq=i)]
        )


async def caught_up(pool, schema, expected):
    return await eventually(lambda: _equals(pool, schema, expected), timeout=60)


async def _equals(pool, schema, expected):
    return await tallies(pool, schema) == expected


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_projection_follows_the_store_and_redelivery_changes_nothing(
    pool, schema, settings, batch
):
    async with running(counting_service(schema, batch=batch), settings) as client:
        store = client.app.state.runtime.store
        await append_increments(store, "a", [1, 2, 3])
        await append_increments(store, "b", [10])
        expected = {"a": (6, 3), "b": (10, 1)}
        assert await caught_up(pool, schema, expected)

        # Redelivery 1: the same records published again (a relay that died before marking).
        records = await consume(settings.kafka_bootstrap_servers, topic_for(schema), 4)
        broker = make_broker(settings.kafka_bootstrap_servers, client_id="replayer")
        await broker.connect()
        try:
            for r in records:
                await broker.publish(
                    r.value,
                    topic_for(schema),
                    key=r.key,
                    headers={k: v.decode() for k, v in r.headers},
                )
        finally:
            await broker.stop()
        await append_increments(store, "c", [5])  # a marker that arrives after the repeats
        expected["c"] = (5, 1)
        assert await caught_up(pool, schema, expected)

    # Redelivery 2: a consumer group that lost its offsets reads the whole topic again.
    duplicates = CONSUMED.labels("tallies", "duplicate")
    before = duplicates._value.get()
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="rejoiner")
    ConsumerRunner(
        Tallies(schema, batch=batch),
        broker=broker,
        pool=pool,
        schema=schema,
        registry=registry,
        clock=SystemClock(),
        group_id=f"fresh-{uuid.uuid4().hex}",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await broker.start()
    try:
        # 4 + 4 repeated + 1 marker records, every one recognised as already processed.
        assert await eventually(lambda: _reached(duplicates, before + 9), timeout=30)
    finally:
        await broker.stop()
    assert await tallies(pool, schema) == expected


async def _reached(counter, value):
    return counter._value.get() >= value


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_poison_messages_go_to_the_dlq_with_the_reason_and_the_consumer_moves_on(
    pool, schema, settings, batch
):
    topic = topic_for(schema)
    async with running(counting_service(schema, batch=batch, fail_on=13), settings) as client:
        store = client.app.state.runtime.store
        broker = make_broker(settings.kafka_bootstrap_servers, client_id="poisoner")
        await broker.connect()
        env = Envelope.new(
            type="cunzhi.test.Incremented", source="/t", subject="counter:p", time=store.clock.now()
        )

        def headers(**changes):
            h = {k: v.decode() for k, v in env.caused(id=str(uuid.uuid4()), **changes).to_headers()}
            return h

        good = json.dumps({"counter": "p", "amount": 1}).encode()
        try:
            await broker.publish(b"{not json", topic, key=b"counter:p", headers=headers())
            await broker.publish(good, topic, key=b"counter:p", headers=headers(schema_version=9))
            await broker.publish(b'{"counter": "p"}', topic, key=b"counter:p", headers=headers())
            await broker.publish(
                good,
                topic,
                key=b"counter:p",
                headers={"ce_id": "x", "ce_type": "cunzhi.test.Incremented"},
            )
        finally:
            await broker.stop()
        await append_increments(store, "p", [13])  # the handler fails on this one, every time
        await append_increments(store, "q", [2])
        assert await caught_up(pool, schema, {"q": (2, 1)})

        dead = await consume(settings.kafka_bootstrap_servers, dlq_for(topic), 5)
        reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
        assert reasons == sorted(
            [
                "bad_json",
                "unknown_version",
                "invalid_payload",
                "bad_envelope",
                "handler_error",
            ]
        )
        failed = next(r for r in dead if dict(r.headers)["dlq_reason"] == b"handler_error")
        assert b"cannot count 13" in dict(failed.headers)["dlq_error"]
        assert dict(failed.headers)["dlq_topic"] == topic.encode()
        assert dict(failed.headers)["ce_type"] == b"cunzhi.test.Incremented"


async def test_rebuild_while_serving_equals_the_live_projection(pool, schema, settings):
    service = counting_service(schema)
    async with running(service, settings) as client:
        store = client.app.state.runtime.store
        for c in range(20):
            await append_increments(store, f"k{c}", range(1, 31))
        expected = {f"k{c}": (465, 30) for c in range(20)}
        assert await caught_up(pool, schema, expected)
        live = await tallies(pool, schema)

        # Events keep arriving while the rebuild runs.
        writer = asyncio.create_task(append_increments(store, "late", range(1, 101)))
        folded = await rebuild(service.consumers[0], store, batch_size=97)
        await writer
        assert folded >= 600
        expected["late"] = (5050, 100)
        assert await caught_up(pool, schema, expected)
        assert {k: v for k, v in (await tallies(pool, schema)).items() if k != "late"} == live
        # The swap left no copies behind, and the indexes came along under their own names.
        tables = {
            r["tablename"]
            for r in await pool.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
            )
        }
        assert tables == {
            "events",
            "outbox",
            "schema_migrations",
            "dead_letters",
            "tallies",
            "tallies__processed",
        }
        indexes = await _indexes(pool, schema, "tallies")
        assert {"tallies_ix0", "tallies_ix1"} <= indexes

        # A second rebuild works just as well (no name left over from the first collides).
        await rebuild(service.consumers[0], store, batch_size=1000)
        assert await tallies(pool, schema) == expected
        assert await _indexes(pool, schema, "tallies") == indexes


async def _indexes(pool, schema, table):
    rows = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2", schema, table
    )
    return {r["indexname"] for r in rows}


class SlowPoison(Tallies):
    """Fails on 13, slowly, so the test can take the broker away before the dead letter."""

    def __init__(self, service: str, failing: asyncio.Event) -> None:
        super().__init__(service, batch=False, fail_on=13)
        self.failing = failing

    async def apply(self, tx, event, envelope) -> None:
        if event.amount == 13:
            self.failing.set()
            await asyncio.sleep(0.5)
        await super().apply(tx, event, envelope)


async def test_a_broker_outage_while_dead_lettering_loses_no_message(
    pool, schema, settings, tmp_path
):
    tansu = EmbeddedTansu(tmp_path)
    tansu.start()
    try:
        own = settings.model_copy(update={"kafka_bootstrap_servers": tansu.bootstrap_servers})
        failing = asyncio.Event()
        service = Service(name=schema, registry=registry, consumers=[SlowPoison(schema, failing)])
        async with running(service, own) as client:
            store = client.app.state.runtime.store
            await append_increments(store, "p", [13])
            await asyncio.wait_for(failing.wait(), 30)
            tansu.pause()  # longer than a produce request may take: the publish fails
            await asyncio.sleep(12)
            tansu.resume()
            await append_increments(store, "q", [2])
            assert await caught_up(pool, schema, {"q": (2, 1)})
            dead = await consume(tansu.bootstrap_servers, dlq_for(topic_for(schema)), 1)
            assert [dict(r.headers)["dlq_reason"] for r in dead][:1] == [b"handler_error"]
            assert Incremented.model_validate_json(dead[0].value).amount == 13
    finally:
        tansu.stop()


async def test_republish_sends_the_history_again_in_order_and_consumers_skip_it(
    pool, schema, settings
):
    duplicates = CONSUMED.labels("tallies", "duplicate")
    async with running(counting_service(schema), settings) as client:
        store = client.app.state.runtime.store
        for counter in ("x", "y", "z"):
            await append_increments(store, counter, [1, 2, 3, 4])
        expected = {c: (10, 4) for c in ("x", "y", "z")}
        assert await caught_up(pool, schema, expected)
        before = duplicates._value.get()

        assert await republish(store) == 12
        assert await eventually(lambda: _reached(duplicates, before + 12), timeout=30)
        assert await tallies(pool, schema) == expected

    records = await consume(settings.kafka_bootstrap_servers, topic_for(schema), 24)
    per_key: dict[bytes, list[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key.setdefault(r.key, []).append(Incremented.model_validate_json(r.value).seq)
    assert per_key == {f"counter:{c}".encode(): [0, 1, 2, 3, 0, 1, 2, 3] for c in "xyz"}


async def test_an_event_type_the_consumer_does_not_handle_is_ignored_not_dead_lettered(
    pool, schema, settings
):
    """A producer that adds a type must not fill its consumers' dead-letter topics."""
    topic = topic_for(schema)
    async with running(counting_service(schema), settings) as client:
        store = client.app.state.runtime.store
        env = Envelope.new(
            type="cunzhi.test.Renamed", source="/t", subject="counter:n", time=store.clock.now()
        )
        broker = make_broker(settings.kafka_bootstrap_servers, client_id="newer-producer")
        await broker.connect()
        try:
            await broker.publish(
                json.dumps({"counter": "n", "name": "new"}).encode(),
                topic,
                key=b"counter:n",
                headers={k: v.decode() for k, v in env.to_headers()},
            )
        finally:
            await broker.stop()
        await append_increments(store, "n", [4])
        assert await caught_up(pool, schema, {"n": (4, 1)})
        processed = await pool.fetchval(
            f'SELECT count(*) FROM "{schema}".tallies__processed WHERE event_id = $1', env.id
        )
        assert processed == 1
        assert await consume(settings.kafka_bootstrap_servers, dlq_for(topic), 1, timeout=3) == []
