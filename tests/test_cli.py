"""The operator's `cunzhi rebuild` on a running service."""

import asyncio
import uuid

import pytest
from cunzhi_meetings.service import build_service
from cunzhi_platform.testing import eventually, running, token

from cunzhi_cli.cli import main

pytestmark = pytest.mark.slow


async def test_rebuild_swaps_in_a_fresh_read_model_while_the_service_serves(
    settings, monkeypatch, capsys
):
    township = f"tw-{uuid.uuid4().hex[:8]}"
    office = token(settings, sub="office", roles=["party_building_office"], township_ids=[township])
    people = [
        {
            "person_id": f"s-{i}",
            "name": f"书记{i}",
            "role": "village_secretary",
            "village_id": f"v{i}",
        }
        for i in range(5)
    ]
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    async with running(build_service(), settings) as client:
        r = await client.post(f"/townships/{township}/roster", json=people, headers=office)
        assert r.status_code == 200, r.text

        async def roster():
            r = await client.get(f"/townships/{township}/roster", headers=office)
            return r.json() if len(r.json()["members"]) == 5 else None

        before = await eventually(roster)
        assert before
        await asyncio.to_thread(main, ["rebuild", "meetings", "roster"])
        assert "rebuilt meetings.roster" in capsys.readouterr().out
        assert await roster() == before
        # The live consumer goes on writing into the swapped-in table.
        more = [
            {"person_id": "s-9", "name": "书记9", "role": "village_secretary", "village_id": "v9"}
        ]
        await client.post(f"/townships/{township}/roster", json=more, headers=office)

        async def six():
            r = await client.get(f"/townships/{township}/roster", headers=office)
            return len(r.json()["members"]) == 6

        assert await eventually(six)

        # Republishing the history changes no read model: every copy is skipped by event id.
        await asyncio.to_thread(main, ["republish", "meetings"])
        assert "events of meetings for its relay to publish again" in capsys.readouterr().out
        unsent = "SELECT count(*) FROM meetings.outbox WHERE sent_at IS NULL"
        assert await eventually(lambda: _none(client, unsent), timeout=30)
        await asyncio.sleep(1)  # the copies reach the consumers
        assert await six()

    with pytest.raises(SystemExit, match="no rebuildable projection 'nope'"):
        await asyncio.to_thread(main, ["rebuild", "meetings", "nope"])


async def _none(client, count_sql):
    return await client.app.state.runtime.pool.fetchval(count_sql) == 0
