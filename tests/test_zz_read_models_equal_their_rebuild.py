"""The suite-wide invariant, checked last (after every fault test): each service's rebuildable
read model holds exactly what a rebuild from its event store gives.

A projection that a redelivery, a retried batch, an out-of-order fold or a paused consumer
had left different from its events shows here as rows that differ. Tests also publish events
*as* a service (as its relay would, copies under new ids included) without storing them, for
the other services to consume; the service's own projections read those too; and some write
to a store while no consumer of it runs. So the comparison covers the townships whose stored
events the live consumer has all processed and whose topic records all come from the store;
columns that only keep the order rows arrived in are left out.
"""

from __future__ import annotations

import json

import asyncpg
import pytest
from cunzhi_platform.consumer import Consumer
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume

from cunzhi_cli.rebuild_check import differences, projections, scope

pytestmark = pytest.mark.slow

PROJECTIONS = projections()


async def injected_townships(pool: asyncpg.Pool, bootstrap: str, schema: str) -> set[str]:
    """Townships of the records on the service's topic that its event store does not hold."""
    stored = {
        str(r["event_id"]) for r in await pool.fetch(f'SELECT event_id FROM "{schema}".events')
    }
    records = await consume(bootstrap, topic_for(schema), 10**7, timeout=5)
    named = {
        json.loads(r.value).get("township_id")
        for r in records
        if dict(r.headers).get("ce_id", b"").decode() not in stored
    }
    return {t for t in named if isinstance(t, str)}


@pytest.mark.parametrize(
    ("service", "consumer"), PROJECTIONS, ids=[f"{s}.{c.name}" for s, c in PROJECTIONS]
)
async def test_every_read_model_equals_its_rebuild(
    pool: asyncpg.Pool, settings: Settings, service: str, consumer: Consumer
) -> None:
    exists = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)",
        service,
        next(iter(consumer.tables)),
    )
    if not exists:
        pytest.fail(f"{service}.{consumer.name} was never created: no test ran the service")
    assert settings.kafka_bootstrap_servers
    left_out = await injected_townships(pool, settings.kafka_bootstrap_servers, service)
    compared = await scope(pool, service, consumer, left_out)
    found = await differences(pool, service, consumer, compared)
    assert not found, "\n".join(found)
