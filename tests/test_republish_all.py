"""The documented recovery after the broker lost its data: `cunzhi republish --all`."""

import asyncio
import contextlib
import uuid

import pytest
from cunzhi_meetings.service import build_service as build_meetings
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.infra import EmbeddedTansu
from cunzhi_platform.testing import consume, eventually, running, token
from cunzhi_topics.service import build_service as build_topics

from cunzhi_cli.cli import main

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

            await asyncio.to_thread(main, ["republish", "--all"])
            out = capsys.readouterr().out
            assert "events of meetings for its relay to publish again" in out
            assert "events of topics for its relay to publish again" in out
            assert "rectification" in out

            for service in ("meetings", "topics"):
                unsent = f"SELECT count(*) FROM {service}.outbox WHERE sent_at IS NULL"
                assert await eventually(lambda q=unsent: _zero(pool, q), timeout=60)
                stored = {
                    str(r["event_id"])
                    for r in await pool.fetch(f"SELECT event_id FROM {service}.events")
                }
                records = await consume(
                    tansu.bootstrap_servers, topic_for(service), len(stored), timeout=30
                )
                assert {dict(r.headers)["ce_id"].decode() for r in records} >= stored
            # The consumers found the recreated topic without a restart.
            assert (await add(meetings, 4)).status_code == 200
            assert await eventually(lambda: roster_of(meetings, 5), timeout=60)
    finally:
        tansu.stop()


async def _zero(pool, sql):
    return await pool.fetchval(sql) == 0
