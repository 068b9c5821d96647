"""The operator's `cunzhi dlq list|replay` on a running service."""

import asyncio
import uuid

import pytest
from counting import Incremented, Tallies, registry
from cunzhi_meetings.domain import roster_stream_id
from cunzhi_meetings.service import build_service
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import ConsumerRunner
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.runtime import Service
from cunzhi_platform.testing import consume, eventually, running, token
from faststream.kafka import KafkaBroker

from cunzhi_cli import dlq
from cunzhi_cli.cli import main

pytestmark = pytest.mark.slow


async def test_a_dead_letter_is_listed_and_replayed_once_its_cause_is_fixed(
    settings, monkeypatch, capsys
):
    township = f"tw-{uuid.uuid4().hex[:8]}"
    office = token(settings, sub="office", roles=["party_building_office"], township_ids=[township])
    member = {"person_id": "s-1", "name": "书记1", "role": "village_secretary", "village_id": "v1"}
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CUNZHI_KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    service = build_service()
    roster = next(c for c in service.consumers if c.name == "roster")
    apply = roster.apply
    broken = True

    async def apply_unless_broken(tx, event, envelope):
        if broken and getattr(event, "township_id", None) == township:
            raise RuntimeError("the roster's new column is not there yet")
        await apply(tx, event, envelope)

    monkeypatch.setattr(roster, "apply", apply_unless_broken)

    async def ours():
        letters = await dlq.dead_letters(settings, service)
        return [d for d in letters if township.encode() in (d.value or b"")]

    async with running(service, settings) as client:
        r = await client.post(f"/townships/{township}/roster", json=[member], headers=office)
        assert r.status_code == 200, r.text
        [letter] = await eventually(ours)
        assert letter.reason == "handler_error"
        assert letter.consumer == "cunzhi.meetings.roster"
        assert letter.event_type == "cunzhi.meetings.RosterMemberAdded"
        assert letter.topic == topic_for("meetings")

        await asyncio.to_thread(main, ["dlq", "list", "meetings"])
        listed = capsys.readouterr().out
        line = next(line for line in listed.splitlines() if letter.id in line)
        for shown in (
            "handler_error",
            "cunzhi.meetings.RosterMemberAdded",
            letter.event_id,
            f"{letter.topic}/{letter.partition}/{letter.offset}",
            "the roster's new column is not there yet",
        ):
            assert shown in line

        capsys.readouterr()
        with pytest.raises(SystemExit) as misuse:  # misuse: the usage and exit 2
            await asyncio.to_thread(main, ["dlq", "replay", "meetings"])
        assert misuse.value.code == 2 and "--id ID" in capsys.readouterr().err
        with pytest.raises(SystemExit, match="no dead letter of meetings waits with the id nope"):
            await asyncio.to_thread(main, ["dlq", "replay", "meetings", "--id", "nope"])

        broken = False  # the fix is deployed
        await asyncio.to_thread(main, ["dlq", "replay", "meetings", "--id", letter.event_id])
        assert "replayed 1 dead letters of meetings" in capsys.readouterr().out

        async def back_in_the_roster():
            r = await client.get(f"/townships/{township}/roster", headers=office)
            return [m["person_id"] for m in r.json()["items"]] == ["s-1"]

        assert await eventually(back_in_the_roster)

    # The replay is the original record again, for the roster only: its key and CloudEvents
    # headers, no dlq_* ones but the consumer it is replayed to.
    records = await consume(settings.kafka_bootstrap_servers, topic_for("meetings"), 10_000, 5)
    copies = [r for r in records if dict(r.headers).get("ce_id") == letter.event_id.encode()]
    assert len(copies) == 2
    original, replayed = sorted(copies, key=lambda r: r.timestamp)
    assert replayed.key == original.key and replayed.value == original.value
    assert dict(replayed.headers) == {
        **dict(original.headers),
        "dlq_replay_for": b"cunzhi.meetings.roster",
    }


async def test_a_replay_goes_to_the_consumer_that_failed_only_and_leaves_the_list(
    settings, pool, monkeypatch, capsys
):
    """Two consumers dead-letter one event; the cause is fixed for one of them. Its replay is
    applied although later events of the stream were applied meanwhile, and the other consumer,
    still failing, ignores the copy instead of dead-lettering it once more."""
    township = f"tw-{uuid.uuid4().hex[:8]}"
    office = token(settings, sub="office", roles=["party_building_office"], township_ids=[township])
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CUNZHI_KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    service = build_service()
    broken = {"roster", "other_meetings"}
    for consumer in service.consumers:
        if consumer.name in broken:
            monkeypatch.setattr(consumer, "apply", _failing_on(consumer, township, broken))

    def member(i: int) -> dict[str, str]:
        return {
            "person_id": f"s-{i}",
            "name": f"书记{i}",
            "role": "village_secretary",
            "village_id": f"v{i}",
        }

    async def ours(replayed=False):
        letters = await dlq.dead_letters(settings, service, replayed=replayed)
        return sorted(
            (d for d in letters if township.encode() in (d.value or b"")),
            key=lambda d: d.consumer,
        )

    async def two_letters():
        return len(await ours()) == 2

    async def roster_of(client, people):
        r = await client.get(f"/townships/{township}/roster", headers=office)
        return sorted(m["person_id"] for m in r.json()["items"]) == people

    async def other_meetings_at(version):
        return (
            await pool.fetchval(
                "SELECT version FROM meetings.other_meetings__positions WHERE stream_id = $1",
                roster_stream_id(township),
            )
            == version
        )

    async with running(service, settings) as client:
        r = await client.post(f"/townships/{township}/roster", json=[member(1)], headers=office)
        assert r.status_code == 200, r.text
        assert await eventually(two_letters, timeout=60)
        r = await client.post(f"/townships/{township}/roster", json=[member(2)], headers=office)
        assert r.status_code == 200, r.text
        assert await eventually(lambda: roster_of(client, ["s-2"]))

        broken.discard("roster")  # its fix is deployed; other_meetings still fails
        other_letter, roster_letter = await ours()
        assert roster_letter.consumer == "cunzhi.meetings.roster"
        await asyncio.to_thread(main, ["dlq", "replay", "meetings", "--id", roster_letter.id])
        assert "replayed 1 dead letters of meetings" in capsys.readouterr().out
        assert await eventually(lambda: roster_of(client, ["s-1", "s-2"]))
        # A third event behind the replayed copy: once other_meetings has passed it, it has
        # passed the copy too.
        r = await client.post(f"/townships/{township}/roster", json=[member(3)], headers=office)
        assert r.status_code == 200, r.text
        assert await eventually(lambda: other_meetings_at(3))

        assert [d.id for d in await ours()] == [other_letter.id]
        [replayed] = await ours(replayed=True)
        assert replayed.id == roster_letter.id and replayed.replayed_at is not None
        await asyncio.to_thread(main, ["dlq", "list", "meetings", "--replayed"])
        listed = capsys.readouterr().out
        assert roster_letter.id in listed and other_letter.id not in listed
        with pytest.raises(SystemExit, match="no dead letter of meetings waits with the id"):
            await asyncio.to_thread(main, ["dlq", "replay", "meetings", "--id", roster_letter.id])


def _failing_on(consumer, township, broken):
    """``consumer.apply`` failing on the first member of ``township`` while it is ``broken``."""
    apply = consumer.apply

    async def failing(tx, event, envelope):
        first = (getattr(event, "township_id", None), getattr(event, "person_id", None))
        if consumer.name in broken and first == (township, "s-1"):
            raise RuntimeError(f"{consumer.name} cannot take this member yet")
        await apply(tx, event, envelope)

    return failing


async def test_a_dead_letter_kept_in_the_database_is_listed_and_replayed(schema, settings, pool):
    """The broker refused it (too large with the dlq_* headers for the consumer's producer)."""
    counter = "c" * 30_000
    service = Service(name=schema, registry=registry, consumers=[Tallies(schema, batch=True)])
    async with running(Service(name=schema, registry=registry), settings) as client:
        store = client.app.state.runtime.store
        failing = _runner(schema, pool, settings, Tallies(schema, batch=True, fail_on=13))
        await failing.setup()
        await failing.broker.start()
        try:
            await store.append(f"counter:{counter}", 0, [Incremented(counter=counter, amount=13)])
            await store.append("counter:after", 0, [Incremented(counter="after", amount=1)])
            assert await eventually(lambda: _tally(pool, schema, "after"))
        finally:
            await failing.broker.stop()

        [letter] = await dlq.dead_letters(settings, service)
        assert letter.id.startswith(f"{schema}.dead_letters/")
        assert letter.reason == "handler_error"
        assert "cannot count 13" in letter.error and "MessageSizeTooLarge" in letter.error
        assert letter.event_type == "cunzhi.test.Incremented"

        fixed = _runner(schema, pool, settings, Tallies(schema, batch=True))
        await fixed.broker.start()
        try:
            assert await dlq.replay(settings, service, [letter.id]) == 1
            assert await eventually(lambda: _tally(pool, schema, counter))
        finally:
            await fixed.broker.stop()


def _runner(schema, pool, settings, consumer) -> ConsumerRunner:
    broker = KafkaBroker(settings.kafka_bootstrap_servers, max_request_size=20_000)
    return ConsumerRunner(
        consumer,
        broker=broker,
        pool=pool,
        schema=schema,
        registry=registry,
        clock=SystemClock(),
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )


async def _tally(pool, schema, counter):
    return await pool.fetchval(f'SELECT total FROM "{schema}".tallies WHERE counter = $1', counter)
