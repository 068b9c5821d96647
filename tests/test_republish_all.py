"""The documented recovery after the broker lost its data: the relays refill it by themselves,
and `cunzhi republish --all` run meanwhile publishes nothing twice."""

import asyncio
import contextlib
import datetime as dt
import uuid

import pytest
from cunzhi_meetings.service import build_service as build_meetings
from cunzhi_platform.auth import TokenIssuer
from cunzhi_platform.clock import ManualClock
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.housekeeping import prune_processed
from cunzhi_platform.infra import EmbeddedTansu
from cunzhi_platform.testing import caught_up, consume, eventually, running, token
from cunzhi_rectification.service import build_service as build_rectification
from cunzhi_topics.service import build_service as build_topics

from cunzhi_cli.cli import main
from cunzhi_cli.cycle import CYCLE_START, forum_cycle
from cunzhi_cli.rebuild_check import differences, projections, rows

pytestmark = pytest.mark.slow


async def test_republish_all_refills_a_restarted_broker_while_the_services_run(
    settings, pool, monkeypatch, capsys, tmp_path
):
    tansu = EmbeddedTansu(tmp_path)
    tansu.start()
    local = settings.model_copy(
        update={"kafka_bootstrap_servers": tansu.bootstrap_servers, "topic_check_interval_s": 0.5}
    )
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CUNZHI_KAFKA_BOOTSTRAP_SERVERS", tansu.bootstrap_servers)
    township = f"tw-{uuid.uuid4().hex[:8]}"
    office = token(settings, sub="office", roles=["party_building_office"], township_ids=[township])

    def member(i: int) -> dict[str, str]:
        return {
            "person_id": f"s-{i}",
            "name": f"书记{i}",
            "role": "village_secretary",
            "village_id": f"v{i}",
        }

    async def add(client, i):
        return await client.post(f"/townships/{township}/roster", json=[member(i)], headers=office)

    async def roster_of(client, n):
        r = await client.get(f"/townships/{township}/roster", headers=office)
        return len(r.json()["items"]) == n

    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(running(build_topics(), local))
            meetings = await stack.enter_async_context(running(build_meetings(), local))
            for i in range(3):
                r = await add(meetings, i)
                assert r.status_code == 200, r.text
            assert await eventually(lambda: roster_of(meetings, 3))
            tansu.proc.kill()  # it forgets every topic, message and consumer group
            tansu.proc.wait()
            r = await add(meetings, 3)
            assert r.status_code == 200  # commands are still acknowledged: the outbox holds them
            tansu = EmbeddedTansu(tmp_path, port=tansu.port)
            tansu.start()

            # The operator follows the runbook while the relays refill the broker themselves:
            # whichever queues first, the other queues nothing.
            await asyncio.to_thread(main, ["republish", "--all"])
            out = capsys.readouterr().out
            for service in ("meetings", "topics"):
                queued = f"events of {service} for its relay to publish again" in out
                waiting = f"{service}: " in out and "of an earlier republish still wait" in out
                assert queued or waiting, out
            assert "rectification" in out

            for service in ("meetings", "topics"):
                unsent = f"SELECT count(*) FROM {service}.outbox WHERE sent_at IS NULL"
                assert await eventually(lambda q=unsent: _zero(pool, q), timeout=60)
                stored = {
                    str(r["event_id"])
                    for r in await pool.fetch(f"SELECT event_id FROM {service}.events")
                }
                records = await consume(
                    tansu.bootstrap_servers, topic_for(service), 2 * len(stored), timeout=15
                )
                assert {dict(r.headers)["ce_id"].decode() for r in records} == stored
                # Not the history twice: at most the batch a relay sent before it noticed.
                assert len(records) - len(stored) <= local.relay_batch_size
            # The consumers found the recreated topic without a restart.
            assert (await add(meetings, 4)).status_code == 200
            assert await eventually(lambda: roster_of(meetings, 5), timeout=60)
    finally:
        tansu.stop()


async def _zero(pool, sql):
    return await pool.fetchval(sql) == 0


async def test_history_older_than_the_marks_republished_and_after_a_broker_restart_counts_once(
    settings, pool, monkeypatch, capsys, tmp_path
):
    """A forum cycle (tasks with progress reports, a forum with its records, topics) whose
    processed marks housekeeping pruned; then `cunzhi republish --all`, a broker that comes
    back empty and a second republish. Every read model holds what it held, which is what its
    rebuild gives: nothing counted or appended twice."""
    tansu = EmbeddedTansu(tmp_path)
    tansu.start()
    local = settings.model_copy(
        update={"kafka_bootstrap_servers": tansu.bootstrap_servers, "topic_check_interval_s": 0.5}
    )
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CUNZHI_KAFKA_BOOTSTRAP_SERVERS", tansu.bootstrap_servers)
    township = f"guandi-{uuid.uuid4().hex[:8]}"
    clock = ManualClock(CYCLE_START)
    issuer = TokenIssuer(settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience)
    schemas = ["topics", "meetings", "rectification"]
    compared = ([township], False)

    async def read_models():
        return {
            (service, consumer.name): await rows(pool, service, consumer, compared)
            for service, consumer in projections()
            if service in schemas
        }

    try:
        async with contextlib.AsyncExitStack() as stack:
            topics, meetings, rectification = [
                await stack.enter_async_context(running(build(), local, clock))
                for build in (build_topics, build_meetings, build_rectification)
            ]
            await forum_cycle(
                topics, meetings, rectification, clock, issuer, township, lambda _: None
            )
            groups = {
                runner.group_id: list(runner.consumer.topics)
                for client in (topics, meetings, rectification)
                for runner in client.app.state.runtime.runners
            }
            await caught_up(pool, tansu.bootstrap_servers, schemas, groups)
            before = await read_models()
            reports = await pool.fetch(
                "SELECT task_id, reports FROM rectification.tasks WHERE township_id = $1",
                township,
            )
            assert reports and all(r["reports"] > 0 for r in reports)

            for restarted in (False, True):
                if restarted:  # the broker comes back empty; the history is published again
                    tansu.proc.kill()
                    tansu.proc.wait()
                    tansu = EmbeddedTansu(tmp_path, port=tansu.port)
                    tansu.start()
                # A month and more later: housekeeping has pruned every mark.
                for schema, client in zip(schemas, (topics, meetings, rectification), strict=True):
                    names = [r.consumer.name for r in client.app.state.runtime.runners]
                    for name in names:
                        await pool.execute(
                            f'UPDATE "{schema}"."{name}__processed" '
                            "SET processed_at = now() - interval '40 days'"
                        )
                    await prune_processed(pool, schema, names, dt.timedelta(days=30))
                await asyncio.to_thread(main, ["republish", "--all"])
                await caught_up(pool, tansu.bootstrap_servers, schemas, groups)
                assert await read_models() == before

            assert (
                await pool.fetch(
                    "SELECT task_id, reports FROM rectification.tasks WHERE township_id = $1",
                    township,
                )
                == reports
            )
            for service, consumer in projections():
                if service in schemas:
                    assert not await differences(pool, service, consumer, compared)
    finally:
        tansu.stop()
