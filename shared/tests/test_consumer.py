"""Consumers and projections on the real broker and database."""

import asyncio
import datetime as dt
import json
import uuid
from typing import ClassVar

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from counting import Incremented, Tallies, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import ConsumerRunner, shape
from cunzhi_platform.envelope import CommandContext, Envelope, dlq_for, topic_for
from cunzhi_platform.eventstore import ConcurrencyError, EventStore
from cunzhi_platform.housekeeping import prune_processed
from cunzhi_platform.infra import EmbeddedTansu
from cunzhi_platform.kafka import ensure_topics, make_broker
from cunzhi_platform.metrics import CONSUMED, DLQ_UNPUBLISHED
from cunzhi_platform.rebuild import NewerProjection, rebuild, rebuild_if_reshaped
from cunzhi_platform.republish import republish
from cunzhi_platform.runtime import Service
from cunzhi_platform.testing import consume, eventually, running
from faststream.kafka import KafkaBroker
from structlog.testing import capture_logs

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
            "projection_shapes",
            "relay_published",
            "dead_letters",
            "dead_letters_replayed",
            "idempotency_keys",
            "tallies",
            "tallies__processed",
            "tallies__positions",
        }
        # The positions were swapped in with the tables: each stream's head, nothing missing.
        heads = f'SELECT stream_id, max(stream_version) FROM "{schema}".events GROUP BY 1'
        positions = f'SELECT stream_id, version FROM "{schema}".tallies__positions'
        assert {tuple(r) for r in await pool.fetch(positions)} == {
            tuple(r) for r in await pool.fetch(heads)
        }
        assert not await pool.fetchval(
            f'SELECT count(*) FROM "{schema}".tallies__positions WHERE NOT isempty(missing)'
        )
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


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_history_older_than_its_pruned_marks_is_never_applied_twice(
    pool, schema, settings, tmp_path, batch
):
    """`cunzhi republish` and the relay's own republish after the broker came back empty send
    every event again under its id; the marks of the old ones were pruned long ago."""
    tansu = EmbeddedTansu(tmp_path)
    tansu.start()
    local = settings.model_copy(
        update={"kafka_bootstrap_servers": tansu.bootstrap_servers, "topic_check_interval_s": 0.5}
    )
    duplicates = CONSUMED.labels("tallies", "duplicate")
    marks = f'"{schema}".tallies__processed'
    try:
        async with running(counting_service(schema, batch=batch), local) as client:
            store = client.app.state.runtime.store
            for counter in ("x", "y", "z"):
                await append_increments(store, counter, [1, 2, 3, 4])
            expected = {c: (10, 4) for c in ("x", "y", "z")}
            assert await caught_up(pool, schema, expected)
            # A month and more later: housekeeping prunes every mark.
            await pool.execute(f"UPDATE {marks} SET processed_at = now() - interval '40 days'")
            assert await prune_processed(pool, schema, ["tallies"], dt.timedelta(days=30)) == 12
            assert await pool.fetchval(f"SELECT count(*) FROM {marks}") == 0

            before = duplicates._value.get()
            assert await republish(store) == 12
            await append_increments(store, "x", [5])  # the stream goes on behind its copies
            expected["x"] = (15, 5)
            assert await eventually(lambda: _reached(duplicates, before + 12), timeout=30)
            assert await caught_up(pool, schema, expected)

            # The broker restarts empty; the relay notices at its next row and queues it all.
            tansu.proc.kill()
            tansu.proc.wait()
            tansu = EmbeddedTansu(tmp_path, port=tansu.port)
            tansu.start()
            await append_increments(store, "w", [7])
            expected["w"] = (7, 1)
            assert await caught_up(pool, schema, expected)
            await pool.execute(f"UPDATE {marks} SET processed_at = now() - interval '40 days'")
            await prune_processed(pool, schema, ["tallies"], dt.timedelta(days=30))
            before = duplicates._value.get()
            assert await republish(store) == 14
            assert await eventually(lambda: _reached(duplicates, before + 14), timeout=30)
            assert await tallies(pool, schema) == expected
            # And the read model is what its rebuild gives.
            await rebuild(Tallies(schema), store)
            assert await tallies(pool, schema) == expected
    finally:
        tansu.stop()


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


def _headers(env: Envelope, *drop: str, **extra: bytes | None) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in env.to_headers() if k not in drop] + list(extra.items())


async def _produce(bootstrap, topic, records) -> list:
    """Send (key, value, headers) records as they are (FastStream would rewrite headers)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [
            await producer.send_and_wait(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
    finally:
        await producer.stop()


def _increment(store, counter: str, **changes) -> Envelope:
    return Envelope.new(
        type="cunzhi.test.Incremented",
        source="/t",
        subject=f"counter:{counter}",
        time=store.clock.now(),
        **changes,
    )


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_a_header_without_value_or_a_failing_upcaster_loses_nothing(
    pool, schema, settings, batch
):
    """FastStream's parser failed on a null header and the batch was skipped without a word;
    an upcaster's error escaped the batch the same way. Also: ``ce_time`` is optional."""
    topic = topic_for(schema)
    async with running(counting_service(schema, batch=batch), settings) as client:
        store = client.app.state.runtime.store
        upcast = _increment(store, "h", schema_version=0)
        await _produce(
            settings.kafka_bootstrap_servers,
            topic,
            [
                (
                    b"counter:h",
                    json.dumps({"counter": "h", "amount": 1}).encode(),
                    _headers(_increment(store, "h"), "ce_time", traceparent=None),
                ),
                (b"counter:h", json.dumps({"counter": "h"}).encode(), _headers(upcast)),
                (
                    b"counter:h",
                    json.dumps({"counter": "h", "count": 2}).encode(),
                    _headers(_increment(store, "h", schema_version=0)),
                ),
            ],
        )
        await append_increments(store, "z", [1])
        assert await caught_up(pool, schema, {"h": (3, 2), "z": (1, 1)})
        dead = await consume(settings.kafka_bootstrap_servers, dlq_for(topic), 1)
        assert [dict(r.headers)["dlq_reason"] for r in dead] == [b"decode_error"]
        assert dict(dead[0].headers)["ce_id"] == upcast.id.encode()
        assert b"KeyError" in dict(dead[0].headers)["dlq_error"]


async def test_an_unforeseen_error_reads_the_record_again_instead_of_moving_past_it(
    pool, schema, settings, monkeypatch
):
    async with running(counting_service(schema, batch=True), settings) as client:
        runtime = client.app.state.runtime
        runner = runtime.runners[0]
        decode = runner._decode
        broken = []

        def once_broken(record):
            if record.key == b"counter:u" and not broken:
                broken.append(record.offset)
                raise RuntimeError("a bug in the platform")
            return decode(record)

        monkeypatch.setattr(runner, "_decode", once_broken)
        await append_increments(runtime.store, "u", [1, 2])
        await append_increments(runtime.store, "v", [3])
        assert await caught_up(pool, schema, {"u": (3, 2), "v": (3, 1)})
        assert broken  # the fault happened, and the records were read again


class Flaky(Tallies):
    """Raises the given faults, one per attempt, when it meets ``amount == 5``."""

    def __init__(self, service: str, faults) -> None:
        super().__init__(service, batch=False)
        self.faults = list(faults)
        self.attempts = 0

    async def apply(self, tx, event, envelope) -> None:
        if event.amount == 5:
            self.attempts += 1
            if self.faults:
                fault = self.faults.pop(0)
                if fault == "terminate":
                    await tx.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                raise fault
        await super().apply(tx, event, envelope)


async def test_transient_database_faults_are_retried_until_they_pass_never_dead_lettered(
    pool, schema, settings
):
    faults = [
        asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InsufficientResourcesError("out of shared memory"),
        asyncpg.ConnectionFailureError("connection failure"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        ConcurrencyError("counter:t", 1, 2),
        "terminate",  # pg_terminate_backend on the consumer's own connection
    ]
    flaky = Flaky(schema, faults)
    service = Service(name=schema, registry=registry, consumers=[flaky])
    async with running(service, settings) as client:
        client.app.state.runtime.runners[0].retry_delay_s = 0.01
        store = client.app.state.runtime.store
        await append_increments(store, "t", [5])
        await append_increments(store, "w", [1])
        assert await caught_up(pool, schema, {"t": (5, 1), "w": (1, 1)})
        assert flaky.faults == [] and flaky.attempts == len(faults) + 1
        topic = topic_for(schema)
        assert await consume(settings.kafka_bootstrap_servers, dlq_for(topic), 1, timeout=3) == []


async def test_a_data_error_is_dead_lettered_at_once_and_the_consumer_moves_on(
    pool, schema, settings
):
    """bigint overflow (SQLSTATE 22003) can never succeed: no retries, reason data_error."""
    async with running(counting_service(schema), settings) as client:
        store = client.app.state.runtime.store
        await append_increments(store, "big", [2**62, 2**62])
        await append_increments(store, "w", [1])
        assert await caught_up(pool, schema, {"big": (2**62, 1), "w": (1, 1)})
        dead = await consume(settings.kafka_bootstrap_servers, dlq_for(topic_for(schema)), 1)
        assert [dict(r.headers)["dlq_reason"] for r in dead] == [b"data_error"]
        assert b"22003" in dict(dead[0].headers)["dlq_error"]


async def test_a_projection_table_that_drifted_pauses_the_consumer_and_fails_readyz(
    pool, schema, settings
):
    async with running(counting_service(schema, batch=True), settings) as client:
        runner = client.app.state.runtime.runners[0]
        runner.pause_retry_s = 0.3
        store = client.app.state.runtime.store
        await append_increments(store, "d", [1])
        assert await caught_up(pool, schema, {"d": (1, 1)})
        assert (await client.get("/readyz")).status_code == 200

        # A deploy renamed a column the projection writes (SQLSTATE 42703).
        await pool.execute(f'ALTER TABLE "{schema}".tallies RENAME COLUMN increments TO n')
        await append_increments(store, "d", [2, 3])

        async def not_ready():
            r = await client.get("/readyz")
            return r if r.status_code == 503 else None

        r = await eventually(not_ready)
        assert r, "readyz stayed ready with a paused consumer"
        assert "tallies" in r.json()["checks"]["consumers"]
        assert "42703" in r.json()["checks"]["consumers"]

        await pool.execute(f'ALTER TABLE "{schema}".tallies RENAME COLUMN n TO increments')
        assert await caught_up(pool, schema, {"d": (6, 3)})
        assert (await client.get("/readyz")).status_code == 200
        assert runner.paused is None
        topic = topic_for(schema)
        assert await consume(settings.kafka_bootstrap_servers, dlq_for(topic), 1, timeout=3) == []


async def test_a_deploy_that_reshaped_a_projection_rebuilds_it_before_it_consumes(
    pool, schema, settings
):
    """Upgrading a service whose read model gained a column: no paused consumer, no operator."""
    async with running(counting_service(schema, batch=True), settings) as client:
        store = client.app.state.runtime.store
        await append_increments(store, "a", [1, 2, 3])
        await append_increments(store, "b", [4])
        assert await caught_up(pool, schema, {"a": (6, 3), "b": (4, 1)})
    shapes = f'"{schema}".projection_shapes'
    assert await pool.fetchval(f"SELECT fingerprint FROM {shapes}") == shape(Tallies(schema))

    # The deploy before this one had no increments column, and its shape is on record.
    await pool.execute(f'ALTER TABLE "{schema}".tallies DROP COLUMN increments')
    await pool.execute(f"UPDATE {shapes} SET fingerprint = 'the previous deploy', version = 1")
    with capture_logs() as logs:
        async with running(counting_service(schema, batch=True), settings) as client:
            runtime = client.app.state.runtime
            # Rebuilt before the consumer started: the column is there and already counted.
            assert await tallies(pool, schema) == {"a": (6, 3), "b": (4, 1)}
            await append_increments(runtime.store, "a", [5])
            assert await caught_up(pool, schema, {"a": (11, 4), "b": (4, 1)})
            assert runtime.runners[0].paused is None
            assert (await client.get("/readyz")).status_code == 200
            live = await tallies(pool, schema)
            await rebuild(runtime.runners[0].consumer, runtime.store)
            assert await tallies(pool, schema) == live
            # Its shape is on record again: the next start rebuilds nothing.
            tallies_now = runtime.runners[0].consumer
            assert not await rebuild_if_reshaped(tallies_now, runtime.store)
            # Tables without a record (the first start with this check) are taken as they are.
            await pool.execute(f"DELETE FROM {shapes}")
            assert not await rebuild_if_reshaped(tallies_now, runtime.store)
            assert await pool.fetchval(f"SELECT fingerprint FROM {shapes}") == shape(tallies_now)

            # An instance of the previous deploy still running during the rollout writes
            # nothing into the rebuilt tables: it pauses, and /readyz would say why.
            previous = ConsumerRunner(
                PreviousTallies(schema, batch=True),
                broker=KafkaBroker(settings.kafka_bootstrap_servers, client_id="previous"),
                pool=pool,
                schema=schema,
                registry=registry,
                clock=SystemClock(),
                group_id=f"{schema}.previous-deploy",
                pause_retry_s=0.3,
                session_timeout_ms=2000,
                heartbeat_interval_ms=300,
            )
            await previous.setup()
            await previous.broker.start()
            try:
                await append_increments(runtime.store, "b", [6])
                assert await caught_up(pool, schema, {"a": (11, 4), "b": (10, 2)})
                assert await eventually(lambda: _paused(previous))
                assert "rebuilt by a newer version (2" in (previous.paused or "")
            finally:
                await previous.broker.stop()
    [rebuilt] = [e for e in logs if e["event"] == "projection_rebuilt_on_shape_change"]
    assert (rebuilt["projection"], rebuilt["events"]) == ("tallies", 4)


async def test_older_code_pauses_rather_than_rebuild_over_a_newer_shape_and_rolls_back_forced(
    pool, schema, settings
):
    """A pod of the previous version restarting in the middle of a rollout, or a rollback,
    finds tables built by a newer version of the projection: it rebuilds nothing (the newer
    pods keep consuming), and a plain `cunzhi rebuild` with the old code refuses too. Only a
    forced rebuild rolls the tables back; the newer version then rebuilds them forward again."""
    async with running(counting_service(schema, batch=True), settings) as client:
        await append_increments(client.app.state.runtime.store, "a", [1, 2, 3])
        assert await caught_up(pool, schema, {"a": (6, 3)})
    store = EventStore(pool, schema, registry, SystemClock())
    shapes = f'"{schema}".projection_shapes'
    newer = await pool.fetchrow(f"SELECT fingerprint, version FROM {shapes}")
    assert tuple(newer) == (shape(Tallies(schema)), 2)

    previous = PreviousTallies(schema, batch=True)
    with capture_logs() as logs:
        assert not await rebuild_if_reshaped(previous, store)
    assert tuple(await pool.fetchrow(f"SELECT fingerprint, version FROM {shapes}")) == tuple(newer)
    assert await tallies(pool, schema) == {"a": (6, 3)}  # the newer tables, as they were
    [told] = [e for e in logs if e["event"] == "projection_newer_than_code"]
    assert "--force" in told["remedy"]
    with pytest.raises(NewerProjection):
        await rebuild(previous, store)
    assert await tallies(pool, schema) == {"a": (6, 3)}

    assert await rebuild(previous, store, force=True) == 3  # the rollback, meant
    assert tuple(await pool.fetchrow(f"SELECT fingerprint, version FROM {shapes}")) == (
        shape(previous),
        1,
    )
    columns = await pool.fetchval(
        "SELECT array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = 'tallies'",
        schema,
    )
    assert columns == ["counter", "total"]
    assert await rebuild_if_reshaped(Tallies(schema, batch=True), store)  # forward again
    assert await tallies(pool, schema) == {"a": (6, 3)}


class PreviousTallies(Tallies):
    """The tallies of a deploy before the increments column."""

    tables: ClassVar = {
        "tallies": "CREATE TABLE IF NOT EXISTS {table} (counter text PRIMARY KEY, total bigint)"
    }
    indexes: ClassVar = {"tallies": ["total"]}
    version = 1

    async def apply(self, tx, event, envelope) -> None:
        await tx.conn.execute(
            f"INSERT INTO {tx.t('tallies')} AS t VALUES ($1, $2) ON CONFLICT (counter) DO "
            "UPDATE SET total = t.total + excluded.total",
            event.counter,
            event.amount,
        )

    async def apply_batch(self, tx, items) -> None:
        for event, envelope in items:
            await self.apply(tx, event, envelope)


async def _paused(runner: ConsumerRunner) -> bool:
    return runner.paused is not None


def _runner_of_its_own(schema, pool, bootstrap, **broker_options):
    """A tallies consumer on a broker of its own (options the runtime's broker lacks)."""
    broker = KafkaBroker(bootstrap, client_id="own", **broker_options)
    runner = ConsumerRunner(
        Tallies(schema, batch=True),
        broker=broker,
        pool=pool,
        schema=schema,
        registry=registry,
        clock=SystemClock(),
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    return broker, runner


async def test_a_dead_letter_the_broker_refuses_is_kept_in_the_database_and_the_consumer_moves_on(
    pool, schema, settings
):
    """Refused for good (here: larger than the runner's producer may send, as a record near
    the broker's limit is once the dlq_* headers are added): retrying would block the partition.
    """
    bootstrap = settings.kafka_bootstrap_servers
    topic = topic_for(schema)
    unpublished = DLQ_UNPUBLISHED.labels("tallies", "bad_json")
    before = unpublished._value.get()
    async with running(Service(name=schema, registry=registry), settings) as client:
        store = client.app.state.runtime.store
        broker, runner = _runner_of_its_own(schema, pool, bootstrap, max_request_size=20_000)
        await runner.setup()
        env = _increment(store, "big")
        value = b"{" + b"x" * 30_000  # not JSON, and more than the runner's broker sends
        [sent] = await _produce(bootstrap, topic, [(b"counter:big", value, _headers(env))])
        await append_increments(store, "big", [4])
        await broker.start()
        try:
            assert await caught_up(pool, schema, {"big": (4, 1)})
        finally:
            await broker.stop()
    kept = await pool.fetch(f'SELECT * FROM "{schema}".dead_letters')
    assert [(r["reason"], r["topic"], r["partition"], r["offset"]) for r in kept] == [
        ("bad_json", topic, sent.partition, sent.offset)
    ]
    assert "MessageSizeTooLarge" in kept[0]["publish_error"]
    assert kept[0]["value"] == value and kept[0]["key"] == b"counter:big"
    assert kept[0]["headers"]["ce_id"] == env.id
    assert unpublished._value.get() == before + 1
    assert await consume(bootstrap, dlq_for(topic), 1, timeout=3) == []


async def test_only_the_dead_letter_publish_failing_commits_nothing_past_the_poison(
    pool, schema, settings, monkeypatch
):
    bootstrap = settings.kafka_bootstrap_servers
    topic = topic_for(schema)
    async with running(Service(name=schema, registry=registry), settings) as client:
        store = client.app.state.runtime.store
        broker, runner = _runner_of_its_own(schema, pool, bootstrap)
        runner.retry_delay_s = 0.05
        await runner.setup()
        publish = runner._publish_dead_letter
        attempts: list[int] = []
        broker_back = asyncio.Event()

        async def failing(record, headers):
            if not broker_back.is_set():
                attempts.append(record.offset)
                raise KafkaConnectionError("the dead-letter topic's leader is unreachable")
            await publish(record, headers)

        monkeypatch.setattr(runner, "_publish_dead_letter", failing)
        [poison] = await _produce(
            bootstrap, topic, [(b"counter:p", b"{not json", _headers(_increment(store, "p")))]
        )
        await append_increments(store, "p", [1, 2])
        tp = TopicPartition(topic, poison.partition)
        await broker.start()
        try:
            assert await eventually(lambda: _more_than(attempts, 5))
            await asyncio.sleep(1)  # later batches would have been committed by now
            assert await _committed(bootstrap, runner.group_id, tp) <= poison.offset
            broker_back.set()
            assert await caught_up(pool, schema, {"p": (3, 2)})
            assert await eventually(
                lambda: _committed_beyond(bootstrap, runner.group_id, tp, poison.offset + 2)
            )
        finally:
            await broker.stop()
    dead = await consume(bootstrap, dlq_for(topic), 1)
    assert [(r.value, dict(r.headers)["dlq_reason"]) for r in dead] == [(b"{not json", b"bad_json")]


async def _more_than(items, n):
    return len(items) > n


async def _committed(bootstrap, group, tp) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return -1 if found is None else found.offset


async def _committed_beyond(bootstrap, group, tp, offset) -> bool:
    return await _committed(bootstrap, group, tp) > offset


async def test_records_carry_the_stream_version_and_no_correlation_header_of_the_framework(
    schema, settings
):
    async with running(counting_service(schema), settings) as client:
        store = client.app.state.runtime.store
        ctx = CommandContext(correlation_id="conversation-1")
        await store.append(
            "counter:s",
            0,
            [Incremented(counter="s", amount=1), Incremented(counter="s", amount=2)],
            ctx,
        )
        await store.append("counter:s", 2, [Incremented(counter="s", amount=3)], ctx)
        records = await consume(settings.kafka_bootstrap_servers, topic_for(schema), 3)
    headers = [dict(r.headers) for r in sorted(records, key=lambda r: r.offset)]
    assert [h["ce_streamversion"] for h in headers] == [b"1", b"2", b"3"]
    assert {h["ce_correlationid"] for h in headers} == {b"conversation-1"}
    assert [h for h in headers if "correlation_id" in h] == []


async def test_what_faststream_catches_itself_is_logged(schema, settings, capsys):
    """With ``logger=None`` an error FastStream caught was dropped without a line."""
    topic = topic_for(schema)
    await ensure_topics(settings.kafka_bootstrap_servers, [topic], partitions=1, with_dlq=False)
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="loud")
    seen = asyncio.Event()

    @broker.subscriber(
        topic,
        group_id=f"loud-{schema}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    async def fails(body) -> None:
        seen.set()
        raise RuntimeError("a subscriber of no consumer runner failed")

    await broker.start()
    try:
        await broker.publish(b"{}", topic)
        await asyncio.wait_for(seen.wait(), 30)
        await asyncio.sleep(0.5)
    finally:
        await broker.stop()
    captured = capsys.readouterr()
    assert "a subscriber of no consumer runner failed" in captured.out + captured.err
