"""Start-up, health, authentication, misconfiguration and relay leadership."""

import asyncio
import contextlib

import pytest
from counting import Incremented, Tallies, registry
from cunzhi_platform.aggregate import Forbidden
from cunzhi_platform.auth import CurrentPrincipal, Principal, TokenIssuer
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.infra import InfrastructureError, free_port
from cunzhi_platform.kafka import ensure_topics
from cunzhi_platform.migrations import migrate
from cunzhi_platform.relay import OutboxRelay
from cunzhi_platform.runtime import Service, start
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume, eventually, running, token
from fastapi import APIRouter
from pydantic import ValidationError

router = APIRouter()


@router.get("/townships/{township_id}/secret")
async def township_secret(township_id: str, who: CurrentPrincipal) -> dict[str, str]:
    who.require_role("party_building_office")
    who.require_township(township_id)
    return {"for": who.sub}


async def test_health_readiness_metrics_and_bearer_tokens(schema, settings):
    service = Service(name=schema, registry=registry, consumers=[Tallies(schema)], routers=[router])
    async with running(service, settings) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await eventually(lambda: _ready(client), timeout=10)
        assert ready["checks"] == {
            "database": "ok",
            "broker": "ok",
            "relay": "leading",
            "consumers": "ok",
            "outbox": "ok",
            "kafka_history": "ok",
        }
        await client.app.state.runtime.store.append(
            "counter:m", 0, [Incremented(counter="m", amount=1)]
        )
        metrics = (await client.get("/metrics")).text
        assert f'cunzhi_events_appended_total{{service="{schema}"}} 1.0' in metrics

        url = "/townships/t1/secret"
        assert (await client.get(url)).status_code == 401
        bad = {"Authorization": "Bearer not-a-jwt"}
        assert (await client.get(url, headers=bad)).status_code == 401
        office = token(settings, sub="p1", roles=["party_building_office"], township_ids=["t1"])
        response = await client.get(url, headers=office)
        assert response.json() == {"for": "p1"}
        assert len(response.headers["x-correlation-id"]) == 36  # one was made for the call
        given = {**office, "X-Correlation-ID": "corr-42"}
        assert (await client.get(url, headers=given)).headers["x-correlation-id"] == "corr-42"
        other = token(settings, sub="p2", roles=["party_building_office"], township_ids=["t2"])
        response = await client.get(url, headers=other)
        assert response.status_code == 403 and "t1" in response.json()["detail"]
        secretary = token(settings, sub="p3", roles=["village_secretary"], township_ids=["t1"])
        assert (await client.get(url, headers=secretary)).status_code == 403


async def _ready(client):
    response = await client.get("/readyz")
    body = response.json()
    return body if response.status_code == 200 and body["checks"]["relay"] == "leading" else None


def test_tokens_from_another_issuer_are_refused():
    ours, theirs = TokenIssuer("a" * 32), TokenIssuer("b" * 32)
    with pytest.raises(Exception, match="Signature"):
        ours.verify(theirs.issue(Principal(sub="x")))
    county = Principal(sub="c", roles=frozenset({"county_organisation_department"}))
    county.require_township("anywhere", read=True)
    with pytest.raises(Forbidden):
        county.require_township("anywhere")
    with pytest.raises(Forbidden, match="v9"):
        Principal(sub="s", village_ids=frozenset({"v1"})).require_villages(["v1", "v9"])


def test_malformed_urls_are_refused_naming_the_setting():
    with pytest.raises(ValidationError, match="CUNZHI_DATABASE_URL"):
        Settings(database_url="mysql://db/cunzhi")
    with pytest.raises(ValidationError, match="CUNZHI_KAFKA_BOOTSTRAP_SERVERS"):
        Settings(kafka_bootstrap_servers="kafka-without-port")


async def test_unreachable_servers_fail_start_up_naming_the_setting(schema, settings):
    service = Service(name=schema, registry=registry)
    dead = f"127.0.0.1:{free_port()}"
    no_db = settings.model_copy(update={"database_url": f"postgresql://x@{dead}/cunzhi"})
    with pytest.raises(InfrastructureError, match="CUNZHI_DATABASE_URL"):
        await start(service, no_db, SystemClock())
    no_kafka = settings.model_copy(update={"kafka_bootstrap_servers": dead})
    with pytest.raises(InfrastructureError, match="CUNZHI_KAFKA_BOOTSTRAP_SERVERS"):
        await start(service, no_kafka, SystemClock())


async def test_two_relays_one_leads_and_the_standby_takes_over(pool, schema, settings):
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
    bootstrap = settings.kafka_bootstrap_servers
    await ensure_topics(bootstrap, [topic_for(schema)], partitions=6)
    store = EventStore(pool, schema, registry, SystemClock())
    fast = settings.model_copy(update={"relay_poll_interval_s": 0.1})
    relays = [OutboxRelay(fast, schema) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        assert await eventually(lambda: _leaders(relays, 1), timeout=10)
        await asyncio.sleep(0.5)
        assert sum(r.is_leader for r in relays) == 1
        for i in range(200):
            await store.append(
                f"counter:{i % 10}", i // 10, [Incremented(counter="l", amount=1, seq=i)]
            )
        leader = next(r for r in relays if r.is_leader)
        assert await eventually(lambda: _unsent_zero(pool, schema), timeout=30)
        leader.stop()
        standby = next(r for r in relays if r is not leader)
        assert await eventually(lambda: _leaders([standby], 1), timeout=10)
        for i in range(200, 300):
            await store.append(
                f"counter:{i % 10}", i // 10, [Incremented(counter="l", amount=1, seq=i)]
            )
        assert await eventually(lambda: _unsent_zero(pool, schema), timeout=30)
    finally:
        for r in relays:
            r.stop()
        await asyncio.gather(*tasks)
    records = await consume(bootstrap, topic_for(schema), 300)
    assert len(records) == 300  # no row published by both relays
    ids = {dict(r.headers)["ce_id"] for r in records}
    assert len(ids) == 300


async def _leaders(relays, n):
    return sum(r.is_leader for r in relays) == n


async def _unsent_zero(pool, schema):
    return await pool.fetchval(f'SELECT count(*) FROM "{schema}".outbox WHERE sent_at IS NULL') == 0


async def test_a_service_can_leave_relaying_to_a_separate_process(pool, schema, settings):
    quiet = settings.model_copy(update={"relay_in_process": False})
    async with running(Service(name=schema, registry=registry), quiet) as client:
        ready = (await client.get("/readyz")).json()
        assert ready["checks"]["relay"] == "separate process"
        await client.app.state.runtime.store.append(
            "counter:r", 0, [Incremented(counter="r", amount=1)]
        )
        await asyncio.sleep(1)  # several poll intervals of a relay, were one running here
        unsent = f'SELECT count(*) FROM "{schema}".outbox WHERE sent_at IS NULL'
        assert await pool.fetchval(unsent) == 1


def ticking(label, ticks):
    async def tick(rt):
        while True:
            ticks.append(label)
            await asyncio.sleep(0.05)

    return tick


async def test_a_timer_runs_in_one_instance_and_moves_when_it_stops(schema, settings):
    ticks: list[str] = []
    first = contextlib.AsyncExitStack()
    await first.enter_async_context(
        running(Service(name=schema, registry=registry, background=[ticking("a", ticks)]), settings)
    )
    try:
        assert await eventually(lambda: _has(ticks, "a"), timeout=10)
        async with running(
            Service(name=schema, registry=registry, background=[ticking("b", ticks)]), settings
        ):
            await asyncio.sleep(1)
            assert "b" not in ticks  # the second instance stands by
            await first.aclose()
            settled = len(ticks)
            assert await eventually(lambda: _has(ticks, "b"), timeout=10)
            assert "a" not in ticks[settled:]
    finally:
        await first.aclose()


async def _has(ticks, label):
    return label in ticks


async def test_readyz_is_not_ready_while_the_outbox_does_not_drain(pool, schema, settings):
    quiet = settings.model_copy(update={"relay_in_process": False, "relay_max_lag_s": 0.5})
    async with running(Service(name=schema, registry=registry), quiet) as client:
        await client.app.state.runtime.store.append(
            "counter:r", 0, [Incremented(counter="r", amount=1)]
        )
        stuck = await eventually(lambda: _not_ready(client), timeout=10)
        assert stuck["checks"]["outbox"].startswith("not draining")
        relay = OutboxRelay(quiet, schema)
        task = asyncio.create_task(relay.run())
        try:
            assert await eventually(lambda: _ready_again(client), timeout=30)
        finally:
            relay.stop()
            await task


async def _not_ready(client):
    response = await client.get("/readyz")
    return response.json() if response.status_code == 503 else None


async def _ready_again(client):
    return (await client.get("/readyz")).status_code == 200
