"""pytest fixtures for the three infrastructure modes (a pytest plugin).

``CUNZHI_TEST_INFRA`` picks the mode: ``embedded`` (default), ``external`` (uses
``CUNZHI_DATABASE_URL`` and ``CUNZHI_KAFKA_BOOTSTRAP_SERVERS``) or ``containers``
(testcontainers). Infrastructure that cannot start fails the session; tests never skip for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from asgi_lifespan import LifespanManager

from .auth import Principal, TokenIssuer
from .clock import Clock
from .eventstore import init_connection
from .infra import Endpoints, infrastructure
from .kafka import KafkaAccess
from .runtime import Service, create_app
from .settings import Settings


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    mode = os.environ.get("CUNZHI_TEST_INFRA", "embedded")
    with tempfile.TemporaryDirectory(prefix="cunzhi-test-") as tmp:
        base = Settings(data_dir=Path(tmp))
        with infrastructure(base, mode) as ep:
            yield ep


@pytest.fixture(scope="session")
def settings(endpoints: Endpoints) -> Settings:
    return Settings(
        database_url=endpoints.database_url,
        kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
        relay_poll_interval_s=0.2,
        scheduler_interval_s=0.2,
        consumer_session_timeout_ms=2_000,
        consumer_heartbeat_interval_ms=300,
        log_json=False,
    )


@pytest.fixture
def schema() -> str:
    """A fresh service name (and so PostgreSQL schema and topic) for one test."""
    return f"t{os.urandom(5).hex()}"


@pytest_asyncio.fixture(scope="session")
async def pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(endpoints.database_url, init=init_connection, max_size=30)
    assert p is not None
    yield p
    await p.close()


def token(settings: Settings, **claims: Any) -> dict[str, str]:
    """Authorization header for a principal built from ``claims``."""
    claims.setdefault("sub", "tester")
    issuer = TokenIssuer.for_settings(settings)
    return {"Authorization": f"Bearer {issuer.issue(Principal.model_validate(claims))}"}


@contextlib.asynccontextmanager
async def running(
    service: Service, settings: Settings, clock: Clock | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The service started for real (store, relay, consumers) behind an in-process client."""
    app = create_app(service, settings, clock)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cunzhi") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def consume(
    kafka: KafkaAccess | str, topic: str, count: int, timeout: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``count`` records of ``topic`` from the beginning (gives up after ``timeout``).

    Partitions are assigned by hand: no consumer group, so no wait for a group to form.
    """
    consumer = AIOKafkaConsumer(**KafkaAccess.of(kafka).client_options(), enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    """Await ``check()`` until it returns a truthy value; the last value if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def groups_behind(kafka: KafkaAccess | str, groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The consumer groups (group id → its topics) whose committed offsets are short of the
    end of one of their topics' partitions."""
    access = KafkaAccess.of(kafka)
    reader = AIOKafkaConsumer(**access.client_options(), enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**access.client_options())
    await reader.start()
    await admin.start()
    try:
        await reader.topics()
        partitions = {
            t: [TopicPartition(t, p) for p in reader.partitions_for_topic(t) or ()]
            for t in {t for topics in groups.values() for t in topics}
        }
        ends = await reader.end_offsets([tp for tps in partitions.values() for tp in tps])
        behind = []
        for group, topics in groups.items():
            # Partitions named: Tansu cannot answer for "all of the group's".
            asked = [tp for t in topics for tp in partitions[t]]
            committed = await admin.list_consumer_group_offsets(group, partitions=asked)
            if any(
                ends[tp] > (max(committed[tp].offset, 0) if tp in committed else 0) for tp in asked
            ):
                behind.append(group)
        return behind
    finally:
        await admin.close()
        await reader.stop()


async def caught_up(
    pool: asyncpg.Pool,
    bootstrap: str,
    schemas: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    timeout: float = 300,
) -> None:
    """Wait until the outboxes of ``schemas`` are sent and no group is behind, twice in a row
    (a policy's events may still be on their way); fails after ``timeout``."""
    deadline, settled = time.monotonic() + timeout, 0
    while settled < 2:
        assert time.monotonic() < deadline, "the consumers did not catch up"
        await asyncio.sleep(1)
        unsent = [
            await pool.fetchval(f'SELECT count(*) FROM "{s}".outbox WHERE sent_at IS NULL')
            for s in schemas
        ]
        behind = ["outbox"] if any(unsent) else await groups_behind(bootstrap, groups)
        settled = 0 if behind else settled + 1


async def every_page(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], limit: int = 500
) -> list[dict[str, Any]]:
    """Every item of a paged list (``{"items", "total", "limit", "offset"}``), read by
    following its pages; ``path`` may carry other query parameters."""
    items: list[dict[str, Any]] = []
    while True:
        r = await client.get(path, params={"limit": limit, "offset": len(items)}, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items
